"""Every place cloudlab patches or reads moto's internals, in one module.

Introduced with the embedded backend (notebook 01). moto's public surface is its servers and
``mock_aws``; the embedded front (``embedded.py``), the per-request IAM checks
(``iam_auth.py``, ``presign.py``) and the local Lambda service need more than that. All of
it goes through here, so a moto upgrade is checked in one place: ``tests/test_moto_compat.py``
fails naming the internal that moved or changed shape, and checks that no other cloudlab
module imports moto. moto is pinned exactly (``MOTO_VERSION``, the same pin as in
``pyproject.toml`` and ``environment.yml``).

Patches (applied once per process: :func:`install` applies the first six when an embedded
server starts, the local Lambda service the last two):

=====================================================  ===================================  ==========================================================  =======
moto internal                                          patched by                           why                                                         since
=====================================================  ===================================  ==========================================================  =======
``moto.core.utils.camelcase_to_underscores``           :func:`memoize_pure_helpers`         pure, re-run per attribute per request: a third of SQS time  0.0.7
``moto.core.utils.method_names_from_class``            :func:`memoize_pure_helpers`         pure, an ``inspect.getmembers`` scan per request             0.0.7
``moto.core.authorization.ActionAuthenticatorMixin``   :func:`install` with                 IAM checks per request for IAM users' keys instead of        5.1.17
``._authenticate_and_authorize_action``                ``iam_auth.authorizer``              moto's global switch (``moto.core.responses`` before)
``moto.core.serialize.BaseJSONSerializer``             :func:`fast_attribute_values`        DynamoDB items were written out member by member through    5.2.0*
``._serialize_type_structure``                                                              alias lookups: most of a GetItem's time (same JSON now)
``moto.dynamodb.parsing.expressions``                  :func:`memoize_update_expressions`   each UpdateItem parsed its expression twice; the tree is    5.2.5*
``.UpdateExpressionParser.make``                                                            only read (the validator works on a deep copy)
``moto.events.models.Rule.send_to_targets``           :func:`schedule_rules_ignore_events`  a rule with a schedule and no pattern matched EVERY          5.2.5*
                                                                                            PutEvents event (AWS: none); moto then failed with a 500
``moto.awslambda.models.LambdaFunction.invoke``        :func:`replace_lambda_invoke`        S3/SNS-triggered invokes run in the local Lambda service;   0.4.27
                                                                                            moto's own needs Docker
``moto.awslambda.models.LambdaBackend``                :func:`replace_event_source_         CloudFormation-created SQS mappings are polled by the       5.2.5*
``.create_event_source_mapping`` / ``.delete_...``     mappings`                            local service; moto's own deliver inside SendMessage
=====================================================  ===================================  ==========================================================  =======

Reads (lazy attributes of this module, so importing it does not import moto):

=========================================================  ==========================================================  =======
moto internal                                              read by, for                                                since
=========================================================  ==========================================================  =======
``moto.backend_index.backend_url_patterns``                ``embedded.MotoDispatcher``: host -> backend name, once      2.2.7
``moto.backends.get_backend``, ``BaseBackend.urls``        :func:`service_backend`: URL patterns per backend            3.1.9
``moto.core.base_backend.BackendDict``                     :func:`service_backend`: regional or global backends         3.1.9
``moto.core.DEFAULT_ACCOUNT_ID``                           every read below (one account, as in the course)             4.0.0
``moto.core.exceptions.HTTPException``                     ``embedded.MotoDispatcher``: moto's error answers            0.4.1
``moto.core.request`` (``Request``, header environ keys)   :func:`moto_request`: a WSGI environ written out directly    >5.2.3
``moto.moto_api._internal.moto_api_backend``               :func:`reset_all_state` (``/moto-api/reset``)                3.1.6
``moto.iam.models.iam_backends`` (users, access keys)      ``iam_auth``, ``presign``: IAM users' keys and secrets       3.1.13
``moto.awslambda.models.lambda_backends``                  ``lambda_service.service``: functions and layers at invoke   2.3.0
``moto.logs.models.logs_backends``                         ``lambda_service.service``: REPORT lines into CloudWatch     2.3.0
``moto.server.ThreadedMotoServer``                         ``embedded.StockMotoServer``: the benchmark's baseline       3.0.6
``moto.sts.models.sts_backends`` (assumed roles)           ``iam_auth.lookup``: temporary credentials                   3.1.12
``moto.s3.models`` (``s3_backends``, ``PublicAccessBlock``)  ``iam_auth``: bucket policies, Block Public Access defaults  3.1.12
``moto.s3.responses.ACTION_MAP``                           ``iam_auth``: the IAM action of an anonymous S3 request     1.3.14
``moto.iam.access_control`` (``S3IAMRequest``,             ``iam_auth.authorise``: signature check, policies, errors   1.3.15
``IAMPolicy``, ``IAMRequestBase._raise_*``)
``moto.core.exceptions`` (``JsonRESTError``, ``_RESTError``)  ``iam_auth``: AWS-shaped errors (JSON or XML)              5.2.0
``moto.sqs.models.sqs_backends``                           ``sqs_rules``: a queue's MaximumMessageSize                   0.3.9
``moto.core.config.default_user_config``                   :func:`stepfunctions_settings`: the interpreter switch       5.0.0
``moto.events.models.events_backends`` (rules, tags)       ``lambda_service.schedules``: schedule rules to fire         5.2.5*
=========================================================  ==========================================================  =======

"since" is the first moto release with that name at that path, read from moto's git history
(">5.2.3": newer than the history at hand; "5.2.5*": not traced back, present in the pin);
the shapes are those of ``MOTO_VERSION``.
:data:`INTERNALS` lists each one with the shape cloudlab relies on, and :func:`problems` says
which no longer match; :func:`check_installed_version` runs it when another moto is installed.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
import types

MOTO_VERSION = "5.2.5"

# name here -> (module, attribute). Looked up on first use (PEP 562), so `import cloudlab`
# stays fast; the embedded server imports moto when it starts.
_LAZY = {
    "DEFAULT_ACCOUNT_ID": ("moto.core", "DEFAULT_ACCOUNT_ID"),
    "BackendDict": ("moto.core.base_backend", "BackendDict"),
    "HTTPException": ("moto.core.exceptions", "HTTPException"),
    "backend_url_patterns": ("moto.backend_index", "backend_url_patterns"),
    "get_backend": ("moto.backends", "get_backend"),
    "moto_api_backend": ("moto.moto_api._internal", "moto_api_backend"),
    "iam_backends": ("moto.iam.models", "iam_backends"),
    "lambda_backends": ("moto.awslambda.models", "lambda_backends"),
    "logs_backends": ("moto.logs.models", "logs_backends"),
    "LambdaFunction": ("moto.awslambda.models", "LambdaFunction"),
    "ActionAuthenticatorMixin": ("moto.core.authorization", "ActionAuthenticatorMixin"),
    "ThreadedMotoServer": ("moto.server", "ThreadedMotoServer"),
    "sts_backends": ("moto.sts.models", "sts_backends"),
    "s3_backends": ("moto.s3.models", "s3_backends"),
    "sqs_backends": ("moto.sqs.models", "sqs_backends"),
    "PublicAccessBlock": ("moto.s3.models", "PublicAccessBlock"),
    "S3_ACTION_MAP": ("moto.s3.responses", "ACTION_MAP"),
    "JsonRESTError": ("moto.core.exceptions", "JsonRESTError"),
    "RESTError": ("moto.core.exceptions", "_RESTError"),
    "S3IAMRequest": ("moto.iam.access_control", "S3IAMRequest"),
    "IAMPolicy": ("moto.iam.access_control", "IAMPolicy"),
    "default_user_config": ("moto.core.config", "default_user_config"),
    "events_backends": ("moto.events.models", "events_backends"),
    "LambdaBackend": ("moto.awslambda.models", "LambdaBackend"),
}


def __getattr__(name: str):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def _get(name: str):
    """A lazy attribute from inside this module (global lookups do not reach ``__getattr__``)."""
    return globals()[name] if name in globals() else __getattr__(name)


def _moto(path: str):
    """The object at dotted ``path`` ("package.module:Attr.attr"), imported."""
    module, _, attributes = path.partition(":")
    value = importlib.import_module(module)
    for part in attributes.split(".") if attributes else ():
        value = getattr(value, part)
    return value


# -- reads --------------------------------------------------------------------------------------
def stepfunctions_settings() -> dict:
    """moto's process-wide Step Functions settings (``execute_state_machine`` runs ASL; notebook 05)."""
    return _get("default_user_config").setdefault("stepfunctions", {})


def service_backend(backend_name: str, region: str):
    """moto's backend object serving ``backend_name`` (e.g. "sqs") in ``region``, default account."""
    backend_dict = _get("get_backend")(backend_name)
    if isinstance(backend_dict, _get("BackendDict")):
        regions = backend_dict[_get("DEFAULT_ACCOUNT_ID")]
        return regions[region] if region in regions else regions["aws"]
    return backend_dict["global"]


def moto_request(method: str, parts, headers, body: bytes):
    """A moto ``Request`` built from a WSGI environ, as moto's own server builds it.

    ``parts`` is the ``urlsplit`` of the AWS-style URL; ``headers`` has ``items()``.
    Werkzeug's ``EnvironBuilder`` (behind ``Request.from_primitives``) costs about a quarter
    of a small request's dispatch; the environ it would build is written out directly here.
    """
    import io
    import sys
    from urllib.parse import unquote_to_bytes

    from moto.core.request import (PRESERVED_HEADER_NAMES_ENVIRON_KEY, Request,
                                   environ_key_for_header, should_preserve_original_header_name)

    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(parts.path).decode("latin-1"),
        "QUERY_STRING": parts.query,
        "RAW_URI": parts.path + (f"?{parts.query}" if parts.query else ""),
        "SERVER_NAME": parts.hostname,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    preserved = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in ("transfer-encoding", "content-length"):
            continue
        key = environ_key_for_header(name)
        environ[key] = f"{environ[key]},{value}" if key in environ and key.startswith("HTTP_") else value
        if should_preserve_original_header_name(name):
            preserved[key] = name
    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = preserved
    return Request(environ)


def reset_all_state() -> None:
    """Forget every bucket, queue, table, ... (moto's ``/moto-api/reset``)."""
    _get("moto_api_backend").reset()


# -- patches ------------------------------------------------------------------------------------
_patch_lock = threading.Lock()
_applied: dict[str, object] = {}  # "module:Attr.attr" -> what was there before cloudlab


def _replace(owner, attribute: str, replacement, path: str) -> None:
    if path in _applied:
        return
    _applied[path] = getattr(owner, attribute)
    setattr(owner, attribute, replacement)


def applied() -> list[str]:
    """The moto internals patched in this process (paths as in :data:`INTERNALS`)."""
    return sorted(_applied)


def original(path: str):
    """What a patched internal was before cloudlab replaced it."""
    return _applied[path]


def _memoize_in_place(function: types.FunctionType, copy_result=lambda value: value) -> None:
    """Swap ``function``'s code for a call into an LRU cache of the original.

    Modules import these functions by name, so rebinding the module attribute would miss
    them; the original function object's code is swapped instead.
    """
    original_function = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                                           function.__defaults__, function.__closure__)
    cached = functools.lru_cache(maxsize=4096)(original_function)
    helper_name = f"_cloudlab_cached_{function.__name__}"
    function.__globals__[helper_name] = lambda argument: copy_result(cached(argument))
    parameter = function.__code__.co_varnames[0]
    namespace: dict = {}
    exec(f"def trampoline({parameter}):\n    return {helper_name}({parameter})\n", {}, namespace)
    function.__code__ = namespace["trampoline"].__code__


def memoize_pure_helpers() -> None:
    """Cache ``camelcase_to_underscores`` and ``method_names_from_class`` (pure functions).

    Profiling the embedded server on an SQS send/receive/delete loop showed about a third of
    its time in these two: the first re-runs for every queue attribute of every request, the
    second is an ``inspect.getmembers`` scan per request. Caching them changes no behaviour.
    """
    from moto.core import utils

    with _patch_lock:
        for name, copy_result in (("camelcase_to_underscores", lambda value: value),
                                  ("method_names_from_class", list)):
            path = f"moto.core.utils:{name}"
            if path not in _applied:
                function = getattr(utils, name)
                _applied[path] = function.__code__
                _memoize_in_place(function, copy_result)


# -- DynamoDB attribute values, written out directly ------------------------------------------
_ATTRIBUTE_VALUE_MEMBERS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})
_NOT_PLAIN = object()


def plain_attribute_value(value):
    """The JSON moto's serializer writes for a DynamoDB ``AttributeValue`` (``{"S": "x"}``,
    ``{"M": {...}}``...), built directly; ``_NOT_PLAIN`` for anything else (binary values,
    unexpected shapes), which then takes moto's own path.

    moto's serializer walks the ``AttributeValue`` structure's ten members for every value,
    each through several alias lookups: a job item with a timeline of a few entries took about
    2 ms per GetItem (measured, ``bench/pipeline_rate.py``). The output is the same: strings and
    numbers as strings, booleans and nulls as booleans, string and number sets as lists, lists
    and maps recursively (``tests/test_moto_compat.py`` compares the two).
    """
    if type(value) is not dict or len(value) != 1:
        return _NOT_PLAIN
    ((kind, inner),) = value.items()
    if kind == "S" or kind == "N":
        return {kind: inner} if type(inner) is str else _NOT_PLAIN
    if kind == "M":
        if type(inner) is not dict:
            return _NOT_PLAIN
        members = {}
        for name, item in inner.items():
            plain = plain_attribute_value(item)
            if plain is _NOT_PLAIN or type(name) is not str:
                return _NOT_PLAIN
            members[name] = plain
        return {"M": members}
    if kind == "L":
        if type(inner) is not list:
            return _NOT_PLAIN
        items = []
        for item in inner:
            plain = plain_attribute_value(item)
            if plain is _NOT_PLAIN:
                return _NOT_PLAIN
            items.append(plain)
        return {"L": items}
    if kind == "BOOL" or kind == "NULL":
        return {kind: inner} if type(inner) is bool else _NOT_PLAIN
    if kind == "SS" or kind == "NS":
        return {kind: list(inner)} if type(inner) is list and all(type(item) is str for item in inner) else _NOT_PLAIN
    return _NOT_PLAIN  # B, BS: moto's own path (base64)


def _is_attribute_value_shape(shape) -> bool:
    return getattr(shape, "name", None) == "AttributeValue" and shape.members.keys() == _ATTRIBUTE_VALUE_MEMBERS


def fast_attribute_values() -> None:
    """Write DynamoDB attribute values out directly in moto's JSON serializer (see
    :func:`plain_attribute_value`); every other structure, and any value it does not cover,
    goes through moto's own code."""
    path = "moto.core.serialize:BaseJSONSerializer._serialize_type_structure"
    with _patch_lock:
        if path in _applied:
            return
        serializer = _moto("moto.core.serialize:BaseJSONSerializer")
        walk_members = serializer._serialize_type_structure

        def serialize_structure(self, serialized, value, shape, key):
            if key and _is_attribute_value_shape(shape):
                plain = plain_attribute_value(value)
                if plain is not _NOT_PLAIN:
                    self._default_serialize(serialized, plain, shape, key)
                    return
            walk_members(self, serialized, value, shape, key)

        _replace(serializer, "_serialize_type_structure", serialize_structure, path)


def memoize_update_expressions() -> None:
    """Parse each distinct DynamoDB ``UpdateExpression`` once (an LRU cache of the trees).

    moto parses an UpdateItem's expression twice per request (to list the placeholders it
    uses, then to apply it) and never changes the tree it gets: ``UpdateExpressionValidator``
    deep-copies it before working on it. Applications send the same few expressions over and
    over (the capstone: six updates per job from four expressions), so the parses are cached.
    An expression that fails to parse raises as before and is not cached.
    """
    path = "moto.dynamodb.parsing.expressions:UpdateExpressionParser.make"
    with _patch_lock:
        if path in _applied:
            return
        parser = _moto("moto.dynamodb.parsing.expressions:UpdateExpressionParser")
        parse = parser.make
        cached = functools.lru_cache(maxsize=1024)(parse)

        def make(cls, expression_str):
            if cls is not parser or type(expression_str) is not str:
                return parse.__func__(cls, expression_str)
            return cached(expression_str)

        _replace(parser, "make", classmethod(make), path)


def schedule_rules_ignore_events() -> None:
    """A rule with a ``ScheduleExpression`` and no ``EventPattern`` matches no PutEvents event.

    On AWS such a rule fires only on its schedule. moto 5.2.5 treats the missing pattern as
    "match everything", so once any stack with a scheduled rule is deployed (the capstone's
    sweeper, notebook 06) every PutEvents on that bus is sent to its target too, and a Lambda
    target makes moto answer 500 (it cannot invoke without Docker). The schedule itself is
    fired by ``lambda_service.schedules``, which never goes through ``send_to_targets``.
    """
    path = "moto.events.models:Rule.send_to_targets"
    with _patch_lock:
        if path in _applied:
            return
        rule_class = _moto("moto.events.models:Rule")
        send = rule_class.send_to_targets

        def send_to_targets(self, original_event, transform_input=True):  # moto's own signature
            if self.scheduled_expression and not self.event_pattern.get_pattern():
                return None
            return send(self, original_event, transform_input)

        _replace(rule_class, "send_to_targets", send_to_targets, path)


class MotoChanged(RuntimeError):
    """The installed moto lacks internals cloudlab relies on; the message names each one."""


def check_installed_version() -> None:
    """With a moto other than ``MOTO_VERSION``, raise :class:`MotoChanged` naming every internal
    that moved or changed, instead of failing later somewhere inside a request."""
    import importlib.metadata

    installed = importlib.metadata.version("moto")
    if installed != MOTO_VERSION:
        found = problems()
        if found:
            raise MotoChanged(f"cloudlab needs moto=={MOTO_VERSION} (found {installed}; reinstall with "
                              "`make install`). What changed:\n" + "\n".join(found))


def install() -> None:
    """Apply the embedded server's patches once per process (``MotoDispatcher`` calls it)."""
    from . import iam_auth

    ActionAuthenticatorMixin = _get("ActionAuthenticatorMixin")
    if not _applied:
        check_installed_version()
    memoize_pure_helpers()
    fast_attribute_values()
    memoize_update_expressions()
    schedule_rules_ignore_events()
    path = "moto.core.authorization:ActionAuthenticatorMixin._authenticate_and_authorize_action"
    with _patch_lock:
        if path not in _applied:
            replacement = iam_auth.authorizer(ActionAuthenticatorMixin._authenticate_and_authorize_action)
            _replace(ActionAuthenticatorMixin, "_authenticate_and_authorize_action", replacement, path)


def replace_lambda_invoke(replacement) -> None:
    """Make ``LambdaFunction.invoke`` (moto's Docker-based run, called for S3 notifications and
    SNS deliveries inside the PutObject/Publish request) call ``replacement`` instead."""
    with _patch_lock:
        _replace(_get("LambdaFunction"), "invoke", replacement, "moto.awslambda.models:LambdaFunction.invoke")


def replace_event_source_mappings(on_create, on_delete) -> None:
    """Hand SQS event source mappings that moto creates (CloudFormation's
    ``AWS::Lambda::EventSourceMapping``) to ``on_create(configuration, region)``, and their
    deletion to ``on_delete(uuid)``.

    The Lambda API's own CreateEventSourceMapping never reaches moto (the local service answers
    it). CloudFormation calls ``LambdaBackend.create_event_source_mapping`` directly, which
    attaches the mapping to moto's queue, and moto then receives and deletes messages inside
    each SendMessage, ignoring ``FunctionResponseTypes``. The replacement keeps moto's record
    (so the stack can describe and delete it) but detaches it from the queue.
    """
    LambdaBackend = _get("LambdaBackend")
    create_path = "moto.awslambda.models:LambdaBackend.create_event_source_mapping"
    delete_path = "moto.awslambda.models:LambdaBackend.delete_event_source_mapping"
    with _patch_lock:
        if create_path in _applied:
            return
        create_original = LambdaBackend.create_event_source_mapping
        delete_original = LambdaBackend.delete_event_source_mapping

        def create_event_source_mapping(self, spec):
            mapping = create_original(self, spec)
            if str(mapping.event_source_arn).startswith("arn:aws:sqs:"):
                queues = _get("sqs_backends")[self.account_id][self.region_name].queues.values()
                for queue in queues:
                    if queue.lambda_event_source_mappings.get(mapping.function_arn) is mapping:
                        del queue.lambda_event_source_mappings[mapping.function_arn]
                on_create(mapping.get_configuration(), self.region_name)
            return mapping

        def delete_event_source_mapping(self, uuid):
            mapping = delete_original(self, uuid)
            on_delete(uuid)
            return mapping

        _replace(LambdaBackend, "create_event_source_mapping", create_event_source_mapping, create_path)
        _replace(LambdaBackend, "delete_event_source_mapping", delete_event_source_mapping, delete_path)


def schedule_rules() -> list[dict]:
    """Every enabled EventBridge rule with a schedule expression, of every account and region
    moto holds: ``{"arn", "name", "region", "account", "expression", "targets", "tags"}``
    (``lambda_service.schedules`` fires them). Read in-process: no request reaches the
    emulator, so nothing shows in the ledger's call counts."""
    rules = []
    events_backends = _get("events_backends")
    for account, regions in list(events_backends.items()):
        for region, backend in list(regions.items()):
            bus = backend.event_buses.get("default")
            if bus is None:
                continue
            for rule in list(bus.rules.values()):
                if not rule.scheduled_expression or rule.state != "ENABLED":
                    continue
                try:
                    tags = {tag["Key"]: tag["Value"] for tag in backend.list_tags_for_resource(rule.arn).get("Tags", [])}
                except Exception:
                    tags = {}
                rules.append({"arn": rule.arn, "name": rule.name, "region": region, "account": account,
                              "expression": rule.scheduled_expression, "targets": list(rule.targets), "tags": tags})
    return rules


# -- what a moto upgrade must keep ----------------------------------------------------------------
def _parameters(*names: str):
    def check(value) -> str | None:
        try:
            found = tuple(inspect.signature(value).parameters)
        except (TypeError, ValueError) as error:
            return f"has no signature ({error})"
        wanted = names
        if found[:len(wanted)] != wanted:
            return f"takes {found}, cloudlab calls it with {wanted}"
        return None
    return check


def _plain_function(*names: str):
    """A Python function of one argument whose code object can be swapped (``_memoize_in_place``)."""
    signature = _parameters(*names)

    def check(value) -> str | None:
        if not isinstance(value, types.FunctionType):
            return f"is a {type(value).__name__}, not a plain function whose code can be swapped"
        if value.__code__.co_argcount != len(names) or value.__closure__:
            return f"has {value.__code__.co_argcount} arguments or a closure; the cache expects {len(names)}, none"
        return signature(value)
    return check


def _instance_of(class_path: str):
    def check(value) -> str | None:
        cls = _moto(class_path)
        return None if isinstance(value, cls) else f"is a {type(value).__name__}, not a {cls.__name__}"
    return check


def _subclass_of(class_path: str):
    def check(value) -> str | None:
        cls = _moto(class_path)
        return None if isinstance(value, type) and issubclass(value, cls) else f"is no longer a {class_path}"
    return check


def _has(*attributes: str):
    def check(value) -> str | None:
        missing = [name for name in attributes if not hasattr(value, name)]
        return f"lacks {', '.join(missing)}" if missing else None
    return check


def _url_patterns(value) -> str | None:
    if not isinstance(value, list) or not value:
        return "is not a non-empty list"
    name, pattern = value[0]
    if not isinstance(name, str) or not hasattr(pattern, "match"):
        return "entries are not (backend name, compiled pattern) pairs"
    return None


def _both(*checks):
    def check(value) -> str | None:
        for one in checks:
            problem = one(value)
            if problem:
                return problem
        return None
    return check


# path -> (shape check, who relies on it). The test calls problems(); each line names one.
INTERNALS: dict[str, tuple] = {
    "moto.core.utils:camelcase_to_underscores": (_plain_function("argument"), "memoize_pure_helpers"),
    "moto.core.utils:method_names_from_class": (_plain_function("clazz"), "memoize_pure_helpers"),
    "moto.core.authorization:ActionAuthenticatorMixin": (
        _has("_authenticate_and_authorize_action", "PUBLIC_OPERATIONS", "_authenticate_and_authorize_normal_action",
             "_authenticate_and_authorize_s3_action"), "install / iam_auth.authorizer"),
    "moto.core.authorization:ActionAuthenticatorMixin._authenticate_and_authorize_action": (
        _parameters("self", "iam_request_cls", "resource"), "install / iam_auth.authorizer"),
    "moto.core.responses:BaseResponse": (_both(_subclass_of("moto.core.authorization:ActionAuthenticatorMixin"),
                                               _has("_get_action", "setup_class")), "iam_auth.authorizer"),
    "moto.iam.access_control:IAMRequestBase.__init__": (
        _parameters("self", "account_id", "method", "path", "data", "body", "headers", "action"), "iam_auth.authorizer"),
    "moto.iam.access_control:IAMRequestBase": (_has("check_signature", "check_action_permitted"), "iam_auth.authorizer"),
    "moto.awslambda.models:LambdaFunction.invoke": (
        _parameters("self", "body", "request_headers", "response_headers"), "replace_lambda_invoke"),
    "moto.awslambda.models:LambdaBackend.create_event_source_mapping": (
        _parameters("self", "spec"), "replace_event_source_mappings"),
    "moto.awslambda.models:LambdaBackend.delete_event_source_mapping": (
        _parameters("self", "uuid"), "replace_event_source_mappings"),
    "moto.awslambda.models:EventSourceMapping": (_has("get_configuration"), "replace_event_source_mappings"),
    "moto.events.models:events_backends": (_instance_of("moto.core.base_backend:BackendDict"), "schedule_rules"),
    "moto.events.models:EventsBackend.list_tags_for_resource": (_parameters("self", "arn"), "schedule_rules"),
    "moto.events.models:Rule.send_to_targets": (_parameters("self", "original_event", "transform_input"),
                                                "schedule_rules_ignore_events"),
    "moto.events.models:EventPattern.get_pattern": (_parameters("self"), "schedule_rules_ignore_events"),
    "moto.backend_index:backend_url_patterns": (_url_patterns, "embedded.MotoDispatcher"),
    "moto.backends:get_backend": (_parameters("name"), "service_backend"),
    "moto.core.base_backend:BaseBackend.urls": (_has("fget"), "embedded.MotoDispatcher (a property: URL -> handler)"),
    "moto.core.base_backend:BackendDict": (_has("__getitem__"), "service_backend"),
    "moto.core:DEFAULT_ACCOUNT_ID": (lambda value: None if isinstance(value, str) and value.isdigit() else
                                     f"is {value!r}, not an account number", "every backend read"),
    "moto.core.exceptions:HTTPException": (_has("code", "get_headers", "get_body"), "embedded.MotoDispatcher"),
    "moto.core.serialize:BaseJSONSerializer._serialize_type_structure": (
        _parameters("self", "serialized", "value", "shape", "key"), "fast_attribute_values"),
    "moto.dynamodb.parsing.expressions:UpdateExpressionParser.make": (_parameters("expression_str"),
                                                                      "memoize_update_expressions"),
    "moto.dynamodb.parsing.validators:Validator.__init__": (
        _parameters("self", "expression", "expression_attribute_names", "expression_attribute_values", "item", "table"),
        "memoize_update_expressions (it deep-copies the tree it is given)"),
    "moto.core.serialize:ResponseSerializer._default_serialize": (
        _parameters("self", "serialized", "value", "shape", "key"), "fast_attribute_values"),
    "moto.core.request:Request": (_subclass_of("werkzeug.wrappers:Request"), "moto_request (Request(environ))"),
    "moto.core.request:PRESERVED_HEADER_NAMES_ENVIRON_KEY": (
        lambda value: None if isinstance(value, str) else "is not a string", "moto_request"),
    "moto.core.request:environ_key_for_header": (_parameters("header_name"), "moto_request"),
    "moto.core.request:should_preserve_original_header_name": (_parameters("header_name"), "moto_request"),
    "moto.moto_api._internal:moto_api_backend": (_has("reset"), "reset_all_state"),
    "moto.iam.models:iam_backends": (_instance_of("moto.core.base_backend:BackendDict"), "iam_auth, presign"),
    "moto.awslambda.models:lambda_backends": (_instance_of("moto.core.base_backend:BackendDict"),
                                              "lambda_service.service"),
    "moto.awslambda.models:LambdaBackend.get_function": (_parameters("self", "function_name_or_arn", "qualifier"),
                                                         "LocalLambdaService.moto_function"),
    "moto.awslambda.models:LambdaBackend.layers_versions_by_arn": (_parameters("self", "layer_version_arn"),
                                                                   "LocalLambdaService.snapshot"),
    "moto.logs.models:logs_backends": (_instance_of("moto.core.base_backend:BackendDict"), "LocalLambdaService.flush_logs"),
    "moto.logs.models:LogsBackend.create_log_group": (_parameters("self", "log_group_name", "tags"), "flush_logs"),
    "moto.logs.models:LogsBackend.create_log_stream": (_parameters("self", "log_group_name", "log_stream_name"), "flush_logs"),
    "moto.logs.models:LogsBackend.put_log_events": (
        _parameters("self", "log_group_name", "log_stream_name", "log_events"), "flush_logs"),
    # temporary credentials, bucket policies, Block Public Access, SQS size rules (iam_auth, sqs_rules)
    "moto.sts.models:sts_backends": (_instance_of("moto.core.base_backend:BackendDict"), "iam_auth.lookup"),
    "moto.s3.models:s3_backends": (_instance_of("moto.core.base_backend:BackendDict"), "iam_auth bucket_policy"),
    "moto.s3.models:S3Backend.get_bucket": (_parameters("self", "bucket_name"), "iam_auth bucket_policy"),
    "moto.s3.models:PublicAccessBlock": (_parameters("block_public_acls", "ignore_public_acls", "block_public_policy",
                                                     "restrict_public_buckets"), "iam_auth.public_access_block"),
    "moto.s3.responses:ACTION_MAP": (lambda value: None if isinstance(value, dict) and {"KEY", "BUCKET"} <= set(value)
                                     else "is not a dict of KEY and BUCKET action tables", "iam_auth._s3_action"),
    "moto.core.exceptions:JsonRESTError": (_has("code", "get_body"), "iam_auth: JSON-protocol errors"),
    "moto.core.exceptions:_RESTError": (_has("code", "get_body"), "iam_auth: XML errors"),
    "moto.iam.access_control:S3IAMRequest": (_subclass_of("moto.iam.access_control:IAMRequestBase"), "iam_auth.authorise"),
    "moto.iam.access_control:IAMRequestBase._raise_invalid_access_key": (_parameters("self", "reason"), "iam_auth"),
    "moto.iam.access_control:IAMRequestBase._raise_access_denied": (_parameters("self"), "iam_auth.authorise"),
    "moto.iam.access_control:IAMPolicy": (_parameters("policy"), "iam_auth.authorise"),
    "moto.iam.models:IAMBackend.get_role_by_arn": (_parameters("self", "arn"), "iam_auth._check_assume_role"),
    "moto.sqs.models:sqs_backends": (_instance_of("moto.core.base_backend:BackendDict"), "sqs_rules"),
    "moto.core.config:default_user_config": (lambda value: None if isinstance(value, dict) else "is not a dict",
                                             "stepfunctions_settings (resilience.orchestration)"),
    "moto.server:ThreadedMotoServer": (_both(_parameters("ip_address", "port", "verbose"),
                                             _has("start", "stop", "get_host_and_port")), "embedded.StockMotoServer"),
}

# Attributes set in moto's __init__ methods, so only found on live objects: the test creates an
# IAM user with an access key and a Lambda function, and checks each (class -> attributes).
INSTANCE_ATTRIBUTES = {
    "moto.iam.models:IAMBackend": ("users",),  # iam_auth, presign: users[name].access_keys
    "moto.iam.models:User": ("access_keys",),
    "moto.iam.models:AccessKey": ("access_key_id", "secret_access_key"),
    "moto.awslambda.models:LambdaFunction": (  # LocalLambdaService.snapshot / invoke, async_invoke
        "function_name", "region", "account_id", "version", "code_sha_256", "handler", "run_time", "memory_size",
        "timeout", "environment_vars", "layers", "package_type", "code_bytes", "reserved_concurrency",
        "event_invoke_config"),
    "moto.logs.models:LogGroup": ("streams",),  # flush_logs
    "moto.events.models:EventsBackend": ("event_buses",),  # schedule_rules
    "moto.events.models:Rule": ("arn", "name", "scheduled_expression", "state", "targets", "event_pattern"),
    "moto.sqs.models:Queue": ("lambda_event_source_mappings",),  # replace_event_source_mappings
}


def instance_problems(objects: dict) -> list[str]:
    """Like :func:`problems`, for live moto objects: ``{class path: instance}``."""
    found = []
    for path, attributes in INSTANCE_ATTRIBUTES.items():
        value = objects.get(path)
        if value is None:
            found.append(f"moto internal {path}: no instance was given to check")
            continue
        missing = [name for name in attributes if not hasattr(value, name)]
        if missing:
            found.append(f"moto internal {path} instances lack {', '.join(missing)} (cloudlab reads them)")
    return found


def problems() -> list[str]:
    """One line per internal in :data:`INTERNALS` that is missing or changed, naming it."""
    found = []
    for path, (check, user) in INTERNALS.items():
        try:
            value = _moto(path)
        except (ImportError, AttributeError) as error:
            found.append(f"moto internal {path} (used by {user}) is gone: {type(error).__name__}: {error}")
            continue
        problem = check(value)
        if problem:
            found.append(f"moto internal {path} (used by {user}) {problem}")
    return found
