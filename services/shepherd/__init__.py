"""The IsletNet worker service: `python -m services.shepherd` runs one worker per GPU (`supervisor`),
each claiming jobs from the durable queue and analysing their images (`worker`)."""
