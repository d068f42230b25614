from tests.support.web import login


def test_admin_sees_tree(client, demo):
    login(client, "admin")
    r = client.get("/org")
    assert r.status_code == 200
    assert "红旗村" in r.text and "振风乡" in r.text
