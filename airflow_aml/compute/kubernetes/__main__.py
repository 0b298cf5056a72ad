"""``python -m airflow_aml.compute.kubernetes``: the kubernetes run supervisor (see :mod:`.supervisor`)."""

import sys

from airflow_aml.compute.kubernetes.supervisor import main

sys.exit(main())
