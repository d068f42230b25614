"""The API's documented error answers: every /api operation lists the errors it can give, in the shape they really
have, so clients (and schemathesis) can rely on /openapi.json."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA = {
    "title": "Error", "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message", "details"], "additionalProperties": False,
        "properties": {"code": {"type": "string", "description": "稳定的错误代码，如 not_found、invalid"},
                       "message": {"type": "string", "description": "中文说明：哪里错了、怎样改"},
                       "details": {"description": "补充信息（如逐项的校验错误），可为 null"}}}},
}
ERRORS_EVERYWHERE = {401: "未登录或令牌无效", 404: "对象不存在，或不在您的权限范围内", 422: "输入有误（message 说明怎样改）",
                     429: "操作过于频繁，或同一地址打开的连接太多（too_many_connections）：稍后重试",
                     503: "系统正忙或数据库暂时连不上，没有保存：按 Retry-After 稍后重试"}
ERRORS_OF_WRITES = {400: "请求有误", 403: "CSRF 校验失败（会话方式须带 X-CSRF-Token 头）",
                    409: "与现有数据冲突（如编号已被占用、幂等键已用于另一个请求）", 413: "上传内容过大"}


def document_errors(app: FastAPI) -> None:
    """Every /api operation documents the errors it can answer, in the shape they really have
    (`{"error": {"code", "message", "details"}}`), instead of FastAPI's `{"detail": [...]}` for 422."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = ERROR_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/api/"):
                continue
            for method, operation in operations.items():
                errors = dict(ERRORS_EVERYWHERE)
                if method.upper() not in ("GET", "HEAD", "OPTIONS"):
                    errors.update(ERRORS_OF_WRITES)
                for status, description in sorted(errors.items()):
                    operation["responses"][str(status)] = {"description": description, "content": ref}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
