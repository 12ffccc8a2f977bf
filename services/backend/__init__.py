"""The IsletNet REST API (Flask under gunicorn): `app.create_app()` builds it; `jobs_api` holds the
job routes, `reports_api` the reports; `openapi` assembles /api/spec.json from both."""
