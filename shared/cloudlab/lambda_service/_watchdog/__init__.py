"""Package marker, so installs ship ``sitecustomize.py`` (it is put on environments' PYTHONPATH)."""
