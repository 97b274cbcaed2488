"""Run `outpost` with a test trust root in place of the built-in ones.

The trust roots are a build-time constant (package data); the development root's private
key is not in the repository, so tests certify their own signing keys under a fresh root
and run the real CLI with that root as the built-in set. Nothing else is replaced.

    python tests/updates/driver.py TRUST_PUB_FILE <outpost arguments...>
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.crypto import signing  # noqa: E402
from appliance.updates import roots  # noqa: E402

_trust = roots.from_keys({"test": signing.parse_public(Path(sys.argv[1]).read_text())})
roots.builtin = lambda: _trust

from appliance import cli  # noqa: E402

sys.exit(cli.main(sys.argv[2:]))
