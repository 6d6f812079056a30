"""Recipe expressions checked before they run: one SQL expression over the run's columns.

An expression is parsed by DuckDB itself (``duckdb.tokenize`` and ``json_serialize_sql``)
and must stay inside its parentheses, with no subquery, table, statement or parameter, and
only built-in scalar, aggregate and window functions that do not look outside the row
(files, settings, environment, session, clock) and are deterministic: a function whose
every form DuckDB's catalogue marks volatile or fixed only within one query (random, uuid,
now, ...) is refused, and so is every aggregate or window function whose result depends on
the order the rows arrive in (:data:`ORDER_SENSITIVE`: first, list, stddev, row_number,
...) unless its window or its own ORDER BY includes ``sample_id`` (a total order), since a
parallel scan delivers rows in a different order on each run and a mixture must be the same
bytes every time. Sampling aggregates (:data:`SAMPLED`: reservoir_quantile, ...) are refused
whatever the order. This is the first of two
layers; the second is the locked connection of :func:`curate.db.connect_sandboxed`, which
holds even where this check would miss something.

Errors are one line: ``recipe.toml: quality: function read_text is not allowed (recipe
SQL sees the run's columns only)``.
"""
from __future__ import annotations

import json
import threading
from typing import Iterable

import duckdb

from curate.db import lock_down
from curate.errors import CurateError

WHY = "recipe SQL sees the run's columns only"
#: Parentheses a recipe expression may nest (DuckDB's parser and the check below recurse).
MAX_NESTING = 100


#: Built-in functions refused although they take no file: they read the machine, the
#: session or the catalog (getenv, current_setting: temp/allowed directories, home
#: folder, ...), change state (nextval, setseed, write_log), or are not a function of the
#: row (random, now: a mixture must be the same bytes on every machine and run).
DENIED = frozenset("""
getenv current_setting current_query current_query_id current_database current_catalog
current_schema current_schemas current_role current_user session_user user getvariable
current_connection_id current_transaction_id txid_current in_search_path version
col_description obj_description shobj_description format_type get_block_size
pg_get_viewdef pg_get_constraintdef pg_conf_load_time pg_postmaster_start_time pg_my_temp_schema
pg_is_other_temp_schema pg_has_role inet_client_addr inet_client_port inet_server_addr inet_server_port
nextval currval setval setseed write_log sleep_ms pg_sleep stats vector_type
random uuid gen_random_uuid uuidv4 uuidv7 now today current_date current_time current_timestamp
current_localtime current_localtimestamp get_current_time get_current_timestamp transaction_timestamp
json_serialize_sql json_deserialize_sql json_serialize_plan
""".split())
#: Aggregate and window functions whose result depends on the order of their input rows
#: (or on a random sample): the catalogue calls them consistent, but over a partition
#: without a total order they differ from run to run (floating-point sums of squares in
#: another order differ in their last bits). Found by feeding every catalogue aggregate and
#: window function the same rows in two orders (tests/mix/test_recipe_limits.py re-checks
#: every one this list lets through).
ORDER_SENSITIVE = frozenset("""
any_value approx_quantile arbitrary arg_max arg_max_null arg_max_nulls_last arg_min arg_min_null
arg_min_nulls_last argmax argmin array_agg entropy first group_concat kurtosis kurtosis_pop last list
listagg max_by min_by regr_syy reservoir_quantile sem skewness stddev stddev_pop stddev_samp string_agg
var_pop var_samp variance approx_top_k lttb bitstring_agg
row_number lag lead first_value last_value nth_value ntile fill
""".split())
#: Aggregates that draw a random sample or a sketch: not deterministic whatever the order.
SAMPLED = frozenset("reservoir_quantile approx_quantile approx_top_k".split())
#: Allowed function kinds (duckdb_functions().function_type); table, table_macro and
#: pragma functions (read_text, read_csv, glob, read_parquet, query, duckdb_settings ...)
#: can only be reached through FROM, and are refused by name as well.
SCALAR_KINDS = ("scalar", "aggregate", "window", "macro")
#: catalogue stabilities of a function that is not a function of its arguments alone
UNSTABLE = ("VOLATILE", "CONSISTENT_WITHIN_QUERY")
STATEMENT_WORDS = frozenset("""
ALTER ANALYZE ATTACH CALL CHECKPOINT COMMENT COPY CREATE DEALLOCATE DELETE DESCRIBE DETACH DROP
EXECUTE EXPLAIN EXPORT FORCE IMPORT INSERT INSTALL LOAD PIVOT PRAGMA PREPARE RESET SET SHOW
SUMMARIZE TRUNCATE UNPIVOT UPDATE USE VACUUM WITH BEGIN COMMIT ROLLBACK ABORT START FROM SELECT
""".split())

_lock = threading.Lock()
_parser: duckdb.DuckDBPyConnection | None = None
_functions: dict[str, set[str]] | None = None
_unstable: frozenset[str] = frozenset()  # every form volatile or fixed within a query only


def _parser_con() -> duckdb.DuckDBPyConnection:
    """A private, locked, data-less connection used only to parse (never runs user SQL)."""
    global _parser, _functions, _unstable
    with _lock:
        if _parser is None:
            con = duckdb.connect()
            kinds: dict[str, set[str]] = {}
            stable: dict[str, bool] = {}
            for name, kind, definition, stability in con.execute(
                "SELECT function_name, function_type, macro_definition, stability FROM duckdb_functions()"
            ).fetchall():
                k = kind
                if kind == "macro" and definition and "select" in definition.lower():
                    k = "table"  # a macro over the catalog (pg_get_viewdef, ...): a query in disguise
                kinds.setdefault(name.lower(), set()).add(k)
                if stability is not None:
                    stable[name.lower()] = stable.get(name.lower(), False) or stability not in UNSTABLE
            _functions = kinds
            _unstable = frozenset(n for n, ok in stable.items() if not ok)
            _parser = lock_down(con, [])
        return _parser


def _fail(field: str, what: str) -> CurateError:
    return CurateError(f"{field}: {what}")


def _snippet(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _tokens(expr: str) -> list[tuple[str, str]]:
    """(type, text) of each token, by DuckDB's own lexer."""
    toks = duckdb.tokenize(expr)
    out = []
    for i, (start, typ) in enumerate(toks):
        end = toks[i + 1][0] if i + 1 < len(toks) else len(expr)
        out.append((str(typ).rsplit(".", 1)[-1], expr[start:end].strip()))
    return out


def _check_tokens(field: str, expr: str) -> None:
    toks = _tokens(expr)
    if not toks:
        raise _fail(field, "is empty; give one SQL expression over the run's columns")
    depth = 0
    for typ, text in toks:
        if typ == "comment":
            raise _fail(field, "SQL comments are not allowed in a recipe expression (use a TOML # comment)")
        if typ != "operator":
            continue
        if ";" in text:
            rest = expr[expr.index(";") + 1:].strip()
            extra = f" (it would run {_snippet(rest, 40)!r})" if rest else ""
            raise _fail(field, f"';' is not allowed: a recipe field is one SQL expression, not statements{extra}")
        for ch in text:
            depth += (ch == "(") - (ch == ")")
            if depth < 0:
                raise _fail(field, "has a ')' without its '(' (a recipe field is one SQL expression)")
            if depth > MAX_NESTING:
                raise _fail(field, f"nests parentheses more than {MAX_NESTING} deep; write a flatter expression")
    if depth:
        raise _fail(field, "has a '(' without its ')'")


def _walk(node, found: list[dict]) -> None:
    """Every dict in a parsed tree, without recursion (a deep expression makes a deep tree)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            found.append(n)
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)


def _total_order(node: dict) -> bool:
    """Whether a window's ORDER BY (or an aggregate's own) includes ``sample_id``."""
    orders = node.get("orders") or (node.get("order_bys") or {}).get("orders") or []
    return any(o.get("expression", {}).get("class") == "COLUMN_REF"
               and str((o["expression"].get("column_names") or [""])[-1]).lower() == "sample_id" for o in orders)


def _statement_word(con, expr: str) -> str | None:
    """The statement keyword (COPY, ATTACH, ...) when ``expr`` is itself a statement."""
    typ, first = _tokens(expr)[0]
    word = first.upper()
    if typ != "keyword" or word not in STATEMENT_WORDS - {"SELECT", "WITH", "FROM"}:
        return None
    try:
        with _lock:
            stmts = con.extract_statements(expr)
    except Exception:
        return None
    return word if stmts and str(stmts[0].type).rsplit(".", 1)[-1] != "SELECT" else None


def check_expression(field: str, expr: str, columns: Iterable[str] | None = None) -> str:
    """Raise CurateError (one line) unless ``expr`` is one SQL expression over columns
    using only allowed built-in functions; return it unchanged otherwise.

    ``columns`` (the run's column names), when given, lets a run column be called like a
    denied parameterless function (``user``, ``current_date``); without it such bare
    names are refused."""
    if not isinstance(expr, str) or not expr.strip():
        raise _fail(field, "must be a non-empty SQL expression")
    _check_tokens(field, expr)
    con = _parser_con()
    assert _functions is not None
    word = _statement_word(con, expr)
    if word:
        raise _fail(field, f"{word} statements are not allowed ({WHY})")
    cols = {c.lower() for c in columns} if columns is not None else set()
    wrapped = f"SELECT (\n{expr}\n) AS __recipe_expr"
    with _lock:
        raw = con.execute("SELECT json_serialize_sql(?)", [wrapped]).fetchone()[0]
    try:
        tree = json.loads(raw)
    except RecursionError:  # a long chain of operators (1+1+...+1) parses to a deep tree
        raise _fail(field, "is nested too deeply to check; write a shorter or flatter expression") from None
    if tree.get("error"):
        first_type, first = _tokens(expr)[0]
        if first_type == "keyword" and first.upper() in STATEMENT_WORDS - {"SELECT", "WITH", "FROM"}:
            raise _fail(field, f"{first.upper()} statements are not allowed ({WHY})")
        msg = tree.get("error_message", "cannot be parsed").splitlines()[0]
        raise _fail(field, f"SQL error: {msg}")
    stmts = tree.get("statements") or []
    node = stmts[0].get("node", {}) if len(stmts) == 1 else {}
    shape_ok = (
        node.get("type") == "SELECT_NODE"
        and len(node.get("select_list", [])) == 1
        and node.get("from_table", {}).get("type") == "EMPTY"
        and not node.get("modifiers") and not node.get("cte_map", {}).get("map")
        and node.get("where_clause") is None and not node.get("group_expressions")
        and node.get("having") is None and node.get("qualify") is None and node.get("sample") is None
    )
    if not shape_ok:
        raise _fail(field, "is not one SQL expression")
    nodes: list[dict] = []
    _walk(node["select_list"][0], nodes)
    for n in nodes:
        cls = n.get("class")
        if cls == "SUBQUERY" or "from_table" in n or "subquery" in n:
            loc, length = n.get("query_location"), n.get("query_location_length")
            text = (wrapped[loc:loc + length] if isinstance(loc, int) and length and loc < len(wrapped)
                    else "SELECT ...")
            raise _fail(field, f"subqueries are not allowed: {_snippet(text)!r} ({WHY})")
        if cls == "COLUMN_REF" and len(n.get("column_names", [])) == 1:
            name = str(n["column_names"][0]).lower()
            if name in DENIED and name not in cols:
                raise _fail(field, f"function {name} is not allowed ({WHY})")
        if cls == "PARAMETER":
            raise _fail(field, "query parameters ($1, ?) are not allowed")
        if cls in ("FUNCTION", "WINDOW") and not n.get("is_operator"):
            name = str(n.get("function_name", "")).lower()
            kinds = _functions.get(name)
            if name in DENIED or (kinds and not kinds & set(SCALAR_KINDS)):
                raise _fail(field, f"function {name} is not allowed ({WHY})")
            if name in _unstable or name in SAMPLED or (name in ORDER_SENSITIVE and not _total_order(n)):
                fix = " unless ordered by sample_id (OVER (... ORDER BY sample_id))" if name in ORDER_SENSITIVE \
                    and name not in SAMPLED else ""
                raise _fail(field, f"function {name} is not allowed{fix}: its result can change from run to run "
                                   "(a mixture is the same bytes on every run)")
            if kinds is None and cls == "FUNCTION":
                raise _fail(field, f"unknown function {name} (only DuckDB's built-in functions can be used)")
    return expr
