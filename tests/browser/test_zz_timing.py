import time
import pytest
from tests.browser.conftest import new_context, login_via_form

@pytest.mark.browser
def test_t(browser, live_server):
    for i in range(3):
        t=time.time(); ctx=new_context(browser, live_server); p=ctx.new_page(); print("ctx", round(time.time()-t,3))
        t=time.time(); p.goto("/login"); print("goto", round(time.time()-t,3))
        t=time.time(); ctx.close(); print("close", round(time.time()-t,3))
    ctx=new_context(browser, live_server); p=ctx.new_page()
    for i in range(3):
        t=time.time(); login_via_form(p, "admin"); print("login", round(time.time()-t,3))
        t=time.time(); ctx.clear_cookies(); print("clear", round(time.time()-t,3))
