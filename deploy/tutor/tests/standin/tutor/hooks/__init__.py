"""Stand-in for tutor.hooks (Tutor v21): Filter and Action objects with Tutor's method names and
semantics (callbacks ordered by priority, default 10, HIGH 5, LOW 50; add_items appends to the list
a list filter returns; contexts record which plugin added a callback, so init tasks can be limited
to one plugin as `do init --limit NAME` does). Only the hooks a plugin uses are listed."""

from __future__ import annotations

import contextlib
import typing as t


class priorities:  # noqa: N801  (a module in Tutor)
    HIGH = 5
    DEFAULT = 10
    LOW = 50


_CONTEXT_STACK: list[str] = []


class Context:
    def __init__(self, name: str) -> None:
        self.name = name

    @contextlib.contextmanager
    def enter(self) -> t.Iterator[None]:
        _CONTEXT_STACK.append(self.name)
        try:
            yield
        finally:
            _CONTEXT_STACK.pop()


class Contexts:
    APP: dict[str, Context] = {}
    PLUGINS = Context("plugins")

    @classmethod
    def app(cls, name: str) -> Context:
        if name not in cls.APP:
            cls.APP[name] = Context("app:" + name)
        return cls.APP[name]


class _Callback:
    def __init__(self, func: t.Callable[..., t.Any], priority: t.Optional[int]) -> None:
        self.func = func
        self.priority = priorities.DEFAULT if priority is None else priority
        self.contexts = list(_CONTEXT_STACK)

    def in_context(self, context: t.Optional[str]) -> bool:
        return context is None or context in self.contexts


def _insert(callback: _Callback, callbacks: list[_Callback]) -> None:
    i = 0
    while i < len(callbacks) and callbacks[i].priority <= callback.priority:
        i += 1
    callbacks.insert(i, callback)


class Filter:
    INSTANCES: list["Filter"] = []

    def __init__(self) -> None:
        self.callbacks: list[_Callback] = []
        Filter.INSTANCES.append(self)

    def add(self, priority: t.Optional[int] = None) -> t.Callable[[t.Callable[..., t.Any]], t.Callable[..., t.Any]]:
        def inner(func: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
            _insert(_Callback(func, priority), self.callbacks)
            return func

        return inner

    def add_item(self, item: t.Any, priority: t.Optional[int] = None) -> None:
        self.add_items([item], priority=priority)

    def add_items(self, items: list[t.Any], priority: t.Optional[int] = None) -> None:
        @self.add(priority=priority)
        def callback(values: list[t.Any], /, *_args: t.Any, **_kwargs: t.Any) -> list[t.Any]:
            return values + items

    def apply(self, value: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        return self.apply_from_context(None, value, *args, **kwargs)

    def apply_from_context(self, context: t.Optional[str], value: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        for callback in self.callbacks:
            if callback.in_context(context):
                value = callback.func(value, *args, **kwargs)
        return value

    def iterate(self, *args: t.Any, **kwargs: t.Any) -> t.Iterator[t.Any]:
        yield from self.iterate_from_context(None, *args, **kwargs)

    def iterate_from_context(self, context: t.Optional[str], *args: t.Any, **kwargs: t.Any) -> t.Iterator[t.Any]:
        yield from self.apply_from_context(context, [], *args, **kwargs)

    def clear(self, context: t.Optional[str] = None) -> None:
        self.callbacks = [c for c in self.callbacks if not c.in_context(context)]


class Action:
    INSTANCES: list["Action"] = []

    def __init__(self) -> None:
        self.callbacks: list[_Callback] = []
        Action.INSTANCES.append(self)

    def add(self, priority: t.Optional[int] = None) -> t.Callable[[t.Callable[..., t.Any]], t.Callable[..., t.Any]]:
        def inner(func: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
            _insert(_Callback(func, priority), self.callbacks)
            return func

        return inner

    def do(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.do_from_context(None, *args, **kwargs)

    def do_from_context(self, context: t.Optional[str], *args: t.Any, **kwargs: t.Any) -> None:
        for callback in list(self.callbacks):
            if callback.in_context(context):
                callback.func(*args, **kwargs)

    def clear(self, context: t.Optional[str] = None) -> None:
        self.callbacks = [c for c in self.callbacks if not c.in_context(context)]


class Actions:
    COMPOSE_PROJECT_STARTED = Action()
    CONFIG_INTERACTIVE = Action()
    CONFIG_LOADED = Action()
    CORE_READY = Action()
    DO_JOB = Action()
    PLUGIN_LOADED = Action()
    PLUGINS_LOADED = Action()
    PLUGIN_UNLOADED = Action()
    PROJECT_ROOT_READY = Action()


class Filters:
    APP_PUBLIC_HOSTS = Filter()
    CLI_COMMANDS = Filter()
    CLI_DO_COMMANDS = Filter()
    CLI_DO_INIT_TASKS = Filter()
    COMPOSE_MOUNTS = Filter()
    CONFIG_DEFAULTS = Filter()
    CONFIG_OVERRIDES = Filter()
    CONFIG_UNIQUE = Filter()
    CONFIG_USER = Filter()
    ENV_PATCHES = Filter()
    ENV_PATTERNS_IGNORE = Filter()
    ENV_PATTERNS_INCLUDE = Filter()
    ENV_TEMPLATE_FILTERS = Filter()
    ENV_TEMPLATE_ROOTS = Filter()
    ENV_TEMPLATE_TARGETS = Filter()
    ENV_TEMPLATE_VARIABLES = Filter()
    IMAGES_BUILD = Filter()
    IMAGES_BUILD_REQUIRED = Filter()
    IMAGES_BUILD_MOUNTS = Filter()
    IMAGES_PULL = Filter()
    IMAGES_PUSH = Filter()
    IS_FILE_RENDERED = Filter()
    MOUNTED_DIRECTORIES = Filter()
    PLUGINS_INFO = Filter()
    PLUGINS_INSTALLED = Filter()
    PLUGINS_LOADED = Filter()


def clear_all(context: t.Optional[str] = None) -> None:
    for f in Filter.INSTANCES:
        f.clear(context)
    for a in Action.INSTANCES:
        a.clear(context)
