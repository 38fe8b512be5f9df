"""The reliability suite: failure and fuzz tests that run with every `make test`
and can be picked alone with `pytest -m reliability`.

These modules share the helpers beside the other integration tests
(operator_fixtures, api_support): put that folder on sys.path, as pytest does
for the test files that live in it."""

from __future__ import annotations

import sys
from pathlib import Path

_INTEGRATION = str(Path(__file__).resolve().parent.parent)
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)
