"""`python -m services.shepherd`: the worker service (see services/shepherd/supervisor.py)."""

import sys

from services.shepherd.supervisor import main

sys.exit(main())
