"""``python -m airflow_aml.compute.spark``: the spark run supervisor (see :mod:`.supervisor`).

The entry point is the package, not ``.supervisor``: the package imports that module, and running
an already imported module with ``-m`` executes it a second time (with a RuntimeWarning).
"""

import sys

from airflow_aml.compute.spark.supervisor import main

sys.exit(main())
