import cProfile, pstats, time
from tests.test_auth import _fast_argon2, _client_stack, form_login, new_client  # noqa
from tests.conftest import DEMO_PASSWORDS, login

def test_bench(app, demo, db):
    c = new_client(app)
    login(c, "clerk")
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    for _ in range(5):
        c2 = new_client(app)
        login(c2, "clerk")
    pr.disable()
    print("\n5 logins", time.perf_counter() - t)
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)
