import pytest

# The helpers in tests/support/ assert like the tests do: pytest rewrites them, so that a failing one shows its values
# (as when they lived in conftest.py and in test modules). Registered here, before anything imports them.
pytest.register_assert_rewrite("tests.support")
