"""python -m eaq"""

import sys

from eaq.cli import main

sys.exit(main())
