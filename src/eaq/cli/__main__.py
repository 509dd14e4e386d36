"""python -m eaq.cli"""

import sys

from eaq.cli import main

sys.exit(main())
