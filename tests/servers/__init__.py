"""Real servers the tests start on loopback (run as subprocesses: ``python -m tests.servers.<name>``)."""
