"""Watching an IsletNet instance: probes that read its state, the alert state machine, alert mail.

`monitors.probes` hold one module per probe (read-only checks), `monitors.alerts` decides when a
result becomes a mail, `monitors.notify` is the one SMTP module, `monitors.silences` the
maintenance windows, `monitors.runner` one pass for cron and `monitors.daemon` the long-running
scheduler with its /status and /metrics endpoints. `monitors.metrics` catalogues what probes
measure (base units) and renders it as Nagios perfdata and Prometheus metrics;
`monitors.nagios` writes `isletops probe`'s plugin output.
"""
