"""Artifacts: the results we stored and the files callers uploaded (rows, retention,
endpoints). The bytes themselves live behind `app.storage`."""
