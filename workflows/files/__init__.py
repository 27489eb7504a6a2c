"""Workflow files: YAML that runs ingest, ask, batch, synthesize, eval and report steps in a run folder.

``schema.py`` reads and checks a file (``conclave workflow schema`` prints its JSON schema), ``access.py`` says what
it may reach (endpoints, paths), ``run.py`` runs its steps and resumes them. The question pipeline they call is the
rest of ``workflows/`` (``runner.py``, ``team.py``, ``methods.py``).
"""
