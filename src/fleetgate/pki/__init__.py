"""Device identity from X.509 certificates: subject rules, chain
verification against a project's registered CA certificates, and the
offline CA kit behind the ``fleetgate pki`` commands."""
