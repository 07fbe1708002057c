"""Device identity from X.509 certificates: subject rules, chain
verification against a project's registered CA certificates, and the
offline CA kit behind the ``fleetgate pki`` commands."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# cryptography (since 42) warns on parsing a serial number that is zero
# or negative. Fleetgate rejects such certificates itself with the reason
# bad_serial, so the warning would only print raw text into server logs.
warnings.filterwarnings(
    "ignore",
    message="Parsed a serial number which wasn't positive",
    category=CryptographyDeprecationWarning,
)
