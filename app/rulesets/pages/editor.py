"""The ruleset (积分细则) edited as a form: the county administrator starts from a stored version, changes fields,
adds or removes rows (plain submit buttons, re-rendered on the server: no script needed) and saves the result as the
next version through the same import as a TOML file, so the same validation and version rules apply.

The mapping between the form and the ruleset lives in `app.rulesets.form` (pure functions); this router only reads the
request, calls it and the service, and renders.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from app import rules
from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.deps import DbSession
from app.errors import AppError, FormRejected
from app.rules.schema import COMBINE_LABELS, LIST_LABELS, PENALTY_LABELS, VOTE_LABELS
from app.rulesets import form
from app.rulesets import service as rulesets
from app.web.templates import redirect, render

router = APIRouter(include_in_schema=False)
Manage = Depends(authorize(Perm.RULESET_MANAGE))
Code = Annotated[str, Query(min_length=1, max_length=40)]
Version = Annotated[int, Query(ge=1, le=1_000_000)]
TEMPLATE = "evaluation/ruleset_edit.html"
LABELS = {"combine": COMBINE_LABELS, "lists": LIST_LABELS, "votes": VOTE_LABELS, "penalty": PENALTY_LABELS}
MAX_FIELDS = 4000  # a form field per input: a large ruleset has a few hundred


def _top_version(session: DbSession, code: str) -> int | None:
    return max((v.version for v in rulesets.list_versions(session) if v.code == code), default=None)


def _ctx(session: DbSession, state: form.State, base: tuple[str, str], **extra: Any) -> dict[str, Any]:
    code = str(state.get("code", "")).strip()
    return {"f": state, "base_code": base[0], "base_version": base[1], "top_version": _top_version(session, code),
            "theme_choices": form.theme_choices(state), "determination_choices": form.determination_choices(state),
            **LABELS, **extra}


@router.get("/rulesets/edit")
def edit(request: Request, session: DbSession, code: Code, version: Version, p: Principal = Manage) -> Response:
    stored = rulesets.get(session, code, version)
    state = form.state_from_ruleset(stored.ruleset)
    top = _top_version(session, code) or version
    state["version"] = str(top + 1)
    return render(request, TEMPLATE, _ctx(session, state, (code, str(version))))


async def _posted(request: Request) -> FormData:
    return await request.form(max_fields=MAX_FIELDS)


@router.post("/rulesets/edit")
def save(request: Request, session: DbSession, posted: Annotated[FormData, Depends(_posted)],
         p: Principal = Manage) -> Response:
    fields = {k: v for k, v in posted.items() if isinstance(v, str)}
    base = (fields.get("base_code", "")[:40], fields.get("base_version", "")[:8])
    state = form.state_from_fields(fields)
    action = fields.get("action", "save")
    if action != "save":
        return render(request, TEMPLATE, _ctx(session, form.apply_action(state, action), base))
    try:
        row = rulesets.import_toml(session, p.actor(), rules.dumps(form.to_ruleset(state)))
    except AppError as e:
        problems = list(getattr(e, "problems", ())) or [e.message]
        shown = AppError(f"未保存：有 {len(problems)} 处需要修改，见下方列表", code=e.code, status=e.status,
                         details={"problems": problems})
        raise FormRejected(shown, TEMPLATE, lambda s: _ctx(s, state, base)) from e
    return redirect(f"/rulesets/view?code={row.code}&version={row.version}", request,
                    f"已保存积分细则 {row.code} 第 {row.version} 版，自{rulesets.month_label(row.effective_from)}起生效")
