"""Code shared by the IsletNet services: the one S3 module (`storage`), the one job queue/database
module (`jobs`) and their common error family (`errors`)."""
