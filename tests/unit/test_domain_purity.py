"""The domain is pure: no I/O, concurrency, clock or randomness imports."""

import ast
import pathlib

import exchange.domain

DOMAIN = pathlib.Path(exchange.domain.__file__).parent
FORBIDDEN_MODULES = {
    "ray", "asyncio", "aiokafka", "kafka", "confluent_kafka", "asyncpg", "psycopg", "psycopg2",
    "boto3", "botocore", "aioboto3", "uvloop", "socket", "ssl", "threading", "multiprocessing",
    "concurrent", "subprocess", "time", "random", "secrets", "uuid", "datetime", "os", "io",
    "http", "urllib", "requests", "httpx", "aiohttp", "fastapi", "starlette", "sqlite3", "logging",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter", "uuid4", "random", "open", "print"}


def _modules():
    files = sorted(DOMAIN.rglob("*.py"))
    assert files, "no domain modules found"
    return files


def test_domain_imports_nothing_impure():
    offences = []
    for path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    offences.append(f"{path.name}:{node.lineno} imports {name}")
    assert offences == []


def test_domain_calls_no_clock_random_or_io():
    offences = []
    for path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in FORBIDDEN_CALLS:
                    offences.append(f"{path.name}:{node.lineno} calls {name}()")
    assert offences == []


def test_every_domain_module_says_what_it_owns_and_must_never_do():
    for path in _modules():
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "Owns" in doc or "owns" in doc, path.name
        assert "never" in doc.lower(), path.name
