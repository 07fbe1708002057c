"""The ``fleetgate`` command line."""
