// Checks the LightDB State editor's JSON as it is typed, so a mistake
// shows next to the field before the form is sent. The server checks
// the document again on submit; this only saves a round trip.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-json-form]")) {
    const field = form.querySelector("textarea");
    const message = form.querySelector(".field-error");
    const wrapper = field.closest(".field");

    const check = () => {
      let problem = "";
      try {
        const value = JSON.parse(field.value);
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          problem = "The document must be a JSON object, such as {\"temp\": 21.5}.";
        }
      } catch (error) {
        problem = "Invalid JSON: " + error.message;
      }
      message.textContent = problem;
      wrapper.classList.toggle("has-error", problem !== "");
      field.setAttribute("aria-invalid", problem === "" ? "false" : "true");
      return problem === "";
    };

    field.addEventListener("input", check);
    form.addEventListener("submit", (event) => {
      if (!check()) {
        event.preventDefault();
        field.focus();
      }
    });
  }
});
