"""Allow ``python -m fleetgate``."""

from fleetgate.cli.main import main

main()
