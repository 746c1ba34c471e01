"""``python -m nebo_cli``: the ``nebo`` console script without the script."""

import sys

from nebo_cli._main import main

sys.exit(main())
