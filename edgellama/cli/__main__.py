import sys

from edgellama.cli import main

sys.exit(main())
