"""The classic builder's step executor: ``POST /build`` after its request is decoded.

Every step but ``FROM`` runs as dockerd's classic builder runs it: a container is made from
the previous step's image with the step's configuration, the step acts on it (``RUN`` starts
it, ``COPY`` and ``ADD`` write into its filesystem, ``WORKDIR`` makes a directory, the other
instructions only change the configuration), and the container is committed into a child image
of the previous one. Before that, :class:`~.cache.BuildCache` looks for the image an earlier
build committed over the same parent with the same configuration: ``---> Using cache``.

The messages are dockerd's, word for word (``Step 2/7 : RUN ...``, `` ---> Running in``,
``Removing intermediate container``, ``Successfully built``): clients parse them (docker-py
takes the image id from ``Successfully built``).
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import structlog
from starlette.concurrency import run_in_threadpool

from dockyard.core.errors import DockyardError, InvalidParameter, NotFound
from dockyard.daemon.build import commands as cmd
from dockyard.daemon.build.cache import BuildCache
from dockyard.daemon.build.changes import apply_change, config_json, shell_of
from dockyard.daemon.build.context import (
    BuildContext,
    Source,
    SourceTree,
    checksum,
    copy_sources,
    fetch_url,
    is_url,
)
from dockyard.daemon.build.dockerfile import Dockerfile, Instruction, Stage, parse
from dockyard.daemon.build.options import BuildOptions, check_platform
from dockyard.daemon.build.shell_words import expand
from dockyard.daemon.containers.config import (
    ContainerConfig,
    CreateRequest,
    HealthConfig,
    HostConfig,
)
from dockyard.daemon.containers.manager import ContainerManager, StartFailed
from dockyard.daemon.containers.model import Container
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.daemon.images.commit import ImageChange, Snapshot, commit_image
from dockyard.daemon.images.store import ImageRecord, ImageStore
from dockyard.linux.inroot import IdMaps, make_directories
from dockyard.linux.mounts import mount_all, unmount_all

_log = structlog.get_logger("dockyard.build")

Emit = Callable[[dict[str, Any]], None]

#: What the classic builder puts in ``PATH`` when the base image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The escape sequences around a ``RUN`` step's standard error in the stream.
STDERR_START, STDERR_END = "\x1b[91m", "\x1b[0m"


class StepFailed(DockyardError):
    """A step failed after the stream started; ``code`` is ``errorDetail.code``, the exit
    code the CLI exits with (dockerd gives one only for a ``RUN`` that exits non-zero)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class SourceDigests:
    """The checksums of files ``COPY --from`` took from images, kept for the daemon's life
    (an image's files never change), at most ``size`` of them, least recently used first out.
    Thread-safe."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._known: OrderedDict[tuple[str, str, tuple[str, ...]], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, tuple[str, ...]]) -> str | None:
        with self._lock:
            found = self._known.get(key)
            if found is not None:
                self._known.move_to_end(key)
            return found

    def put(self, key: tuple[str, str, tuple[str, ...]], digest: str) -> None:
        with self._lock:
            self._known[key] = digest
            self._known.move_to_end(key)
            while len(self._known) > self._size:
                self._known.popitem(last=False)


@attrs.define
class StageState:
    """A stage while it builds: its image so far and the configuration the next step gets."""

    stage: Stage
    image: ImageRecord | None
    config: ContainerConfig
    #: ``ARG``s declared in this stage, with the value each has (``None``: none given).
    args: dict[str, str | None] = attrs.Factory(dict)
    #: ``MAINTAINER``: the author of every image the stage commits after it.
    maintainer: str = ""
    #: Whether the stage set ``CMD`` (an ``ENTRYPOINT`` after it keeps it).
    cmd_set: bool = False


def _env_dict(env: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in env or []:
        key, _, value = item.partition("=")
        found[key] = value
    return found


class Builder:
    """One build. ``run`` is called once; messages go to ``emit`` as they happen."""

    def __init__(
        self,
        images: ImageStore,
        containers: ContainerManager,
        options: BuildOptions,
        context: BuildContext,
        dockerfile: Dockerfile,
        emit: Emit,
        pull_image: Callable[[str], Any] | None = None,
        source_digests: SourceDigests | None = None,
    ) -> None:
        self.images = images
        self.containers = containers
        self.options = options
        self.context = context
        self.dockerfile = dockerfile
        self._emit = emit
        self._pull_image = pull_image
        self.source_digests = source_digests or SourceDigests()
        self._stages: dict[str, ImageRecord | None] = {}
        self._consumed: set[str] = set()
        self._step = 0
        self._show_images = True
        self._cache: BuildCache | None = None
        #: The values of the ARGs before the first FROM: an ARG naming one again inside a
        #: stage takes its value.
        self._global_values: dict[str, str | None] = {}
        self._stage_list = dockerfile.stages_to_build(options.target or None)
        # The labels of the request become LABEL steps after the last stage, as in dockerd.
        self._total = dockerfile.step_count(options.target or None) + len(options.labels)

    # ---------------------------------------------------------------- messages

    def _stream(self, text: str) -> None:
        self._emit({"stream": text})

    def _announce(self, instruction: Instruction) -> None:
        self._announce_text(instruction.original)

    def _announce_text(self, text: str) -> None:
        self._step += 1
        self._stream(f"Step {self._step}/{self._total} : {text}")
        self._stream("\n")

    def _image_line(self, image: ImageRecord) -> None:
        if self._show_images:
            self._stream(f" ---> {image.short_id}\n")

    # ---------------------------------------------------------------- the build

    async def run(self) -> ImageRecord:
        """Build every stage up to the target; tag and return the last stage's image."""
        cache_from = []
        for name in self.options.cache_from:
            with contextlib.suppress(NotFound):
                cache_from.append(self.images.resolve(name))
        self._cache = BuildCache(self.images, cache_from)
        warnings = self.dockerfile.warning_text()
        if warnings:
            self._stream(f"{STDERR_START}{warnings}{STDERR_END}")
        global_args = self._global_values = self._global_args()
        last: ImageRecord | None = None
        for stage in self._stage_list:
            state = await self._from(stage, global_args)
            for instruction in stage.instructions:
                await self._dispatch(state, instruction)
            if stage is self._stage_list[-1]:
                await self._label_steps(state)
            last = state.image
            if stage.name is not None:
                self._stages[stage.name.lower()] = state.image
            self._stages[str(stage.index)] = state.image
            if state.image is not None:
                self._emit({"aux": {"ID": state.image.id}})
        unused = sorted(set(self.options.build_args) - self._consumed - set(cmd.PREDEFINED_ARGS))
        if unused:
            self._stream(
                f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n"
            )
        if last is None:
            raise StepFailed("No image was generated. Is your Dockerfile empty?")
        self._stream(f"Successfully built {last.short_id}\n")
        for reference in self.options.tags:
            await run_in_threadpool(self.images.tag, last.id, reference)
            self._stream(f"Successfully tagged {reference.familiar()}\n")
        return last

    async def _label_steps(self, state: StageState) -> None:
        """``labels=``: one ``LABEL`` step per label, sorted by key, on the last stage built
        (dockerd adds them to the Dockerfile so)."""
        for key, value in sorted(self.options.labels.items()):
            self._announce_text(f"LABEL {key}={value}")
            change = apply_change(state.config, cmd.Label(((key, value),)))
            await self._metadata(state, change.config, change.comment)

    def _global_args(self) -> dict[str, str | None]:
        """The ``ARG``s before the first ``FROM``: they can only be used in ``FROM`` lines."""
        values: dict[str, str | None] = {}
        for instruction in self.dockerfile.global_args:
            self._announce(instruction)
            command = self._command(instruction, self._known(values))
            assert isinstance(command, cmd.Arg)
            for name, default in command.pairs:
                values[name] = self._arg_value(name, default)
        return values

    def _arg_value(self, name: str, default: str | None) -> str | None:
        given = self.options.build_args.get(name)
        if name in self.options.build_args:
            self._consumed.add(name)
        return given if given is not None else default

    def _command(self, instruction: Instruction, variables: Mapping[str, str]) -> cmd.Command:
        try:
            return cmd.to_command(instruction, variables, self.dockerfile.escape)
        except InvalidParameter as exc:  # a bad ${...}, port or signal: in the stream
            raise StepFailed(exc.message) from None

    @staticmethod
    def _known(values: Mapping[str, str | None]) -> dict[str, str]:
        return {name: value for name, value in values.items() if value is not None}

    def _variables(self, state: StageState) -> dict[str, str]:
        """What ``$NAME`` expands to in a step: the stage's args, overridden by its env."""
        return {**self._known(state.args), **_env_dict(state.config.env)}

    # ---------------------------------------------------------------- FROM

    async def _from(self, stage: Stage, global_args: dict[str, str | None]) -> StageState:
        instruction = stage.from_instruction
        self._announce(instruction)
        command = self._command(instruction, self._known(global_args))
        assert isinstance(command, cmd.From)
        if command.platform:
            try:
                check_platform(command.platform, "FROM --platform")
            except InvalidParameter as exc:
                raise StepFailed(exc.message) from None
        base = command.base
        image: ImageRecord | None
        if base.lower() == "scratch":
            image, config = None, ContainerConfig()
        else:
            image = await self._base_image(base)
            raw = (await run_in_threadpool(self.images.config, image)).get("config") or {}
            config = ENGINE_API.decode(raw, ContainerConfig)
        if "PATH" not in _env_dict(config.env):
            config = attrs.evolve(config, env=[*(config.env or []), f"PATH={DEFAULT_PATH}"])
        state = StageState(stage=stage, image=image, config=config)
        await self._run_triggers(state)
        # FROM scratch shows an empty id, as in dockerd.
        self._stream(f" ---> {state.image.short_id if state.image else ''}\n")
        return state

    async def _base_image(self, name: str) -> ImageRecord:
        earlier = self._stages.get(name.lower())
        if name.lower() in self._stages:
            if earlier is None:
                raise StepFailed(f"stage {name} is empty (FROM scratch with no steps)")
            return earlier
        if self.options.pull and self._pull_image is not None:
            await self._pull_image(name)
        try:
            return await run_in_threadpool(self.images.resolve, name)
        except NotFound:
            if self._pull_image is None:
                raise
        await self._pull_image(name)
        return await run_in_threadpool(self.images.resolve, name)

    async def _run_triggers(self, state: StageState) -> None:
        triggers = list(state.config.on_build or [])
        if not triggers:
            return
        # dockerd's three writes, which clients see as three messages.
        self._stream(f"# Executing {len(triggers)} build trigger")
        if len(triggers) > 1:
            self._stream("s")
        self._stream("\n")
        state.config = attrs.evolve(state.config, on_build=None)
        # A trigger's image is not shown: the FROM step shows the last one.
        self._show_images = False
        try:
            for text in triggers:
                for instruction in parse(f"FROM scratch\n{text}\n").stages[0].instructions:
                    await self._dispatch(state, instruction, announce=False)
        finally:
            self._show_images = True

    # ---------------------------------------------------------------- dispatch

    async def _dispatch(
        self, state: StageState, instruction: Instruction, announce: bool = True
    ) -> None:
        if announce:
            self._announce(instruction)
        variables = self._variables(state)
        command = self._command(instruction, variables)
        config = state.config
        if isinstance(command, cmd.Run):
            await self._run(state, command)
        elif isinstance(command, cmd.Copy):
            await self._copy(state, command)
        elif isinstance(command, cmd.Workdir):
            await self._workdir(state, command)
        elif isinstance(command, cmd.Arg):
            comment = "ARG"
            for name, default in command.pairs:
                value = self._global_values.get(name) if default is None else default
                state.args[name] = self._arg_value(name, value)
                # As dockerd: history names the Dockerfile's default, not the value given,
                # so the step is cached across values (the RUN steps using it are not).
                comment += f" {name}" + (f"={default}" if default is not None else "")
            await self._metadata(state, config, comment)
        else:
            written = None
            if isinstance(command, cmd.Expose):
                escape = self.dockerfile.escape
                written = [expand(word, variables, escape) for word in instruction.arguments]
            if isinstance(command, cmd.Maintainer):
                state.maintainer = command.name
            change = apply_change(config, command, cmd_set=state.cmd_set, written_ports=written)
            state.cmd_set = state.cmd_set or isinstance(command, cmd.Cmd)
            await self._metadata(state, change.config, change.comment)

    @staticmethod
    def _shell(config: ContainerConfig) -> list[str]:
        return shell_of(config)

    # ---------------------------------------------------------------- committing

    def _probe(
        self, state: StageState, config: ContainerConfig, command: list[str]
    ) -> ContainerConfig:
        """The container config a step commits, which the cache compares."""
        parent = state.image.id if state.image is not None else ""
        return attrs.evolve(config, cmd=command, image=parent)

    async def _cached(
        self, state: StageState, config: ContainerConfig, probe: ContainerConfig
    ) -> bool:
        if self.options.no_cache or self._cache is None:
            return False
        encoded = config_json(probe)
        hit = await run_in_threadpool(self._cache.find, state.image, encoded)
        if hit is None:
            return False
        self._stream(" ---> Using cache\n")
        self._image_line(hit)
        state.image, state.config = hit, config
        return True

    async def _metadata(self, state: StageState, config: ContainerConfig, comment: str) -> None:
        """A step that only changes the configuration: committed with no layer."""
        # The shell the step leaves (a SHELL step names itself with its new shell).
        probe = self._probe(state, config, [*self._shell(config), "#(nop) ", comment])
        if await self._cached(state, config, probe):
            return
        container = await self._container(state, probe, announce=True)
        await self._commit(state, container, config, probe, changed_files=False)

    async def _container(
        self, state: StageState, config: ContainerConfig, announce: bool
    ) -> Container:
        limits = self.options.limits
        fields = {name: getattr(config, name) for name in attrs.fields_dict(ContainerConfig)}
        fields["image"] = state.image.id if state.image is not None else ""
        # A step's container is never health-checked: the image's HEALTHCHECK is for what
        # runs from the image, not for its build.
        fields["healthcheck"] = HealthConfig(test=["NONE"])
        request = CreateRequest(
            **fields,
            host_config=HostConfig(
                network_mode=self.options.network_mode or "default",
                extra_hosts=list(self.options.extra_hosts) or None,
                shm_size=self.options.shm_size,
                memory=limits.memory,
                memory_swap=limits.memory_swap,
                cpu_shares=limits.cpu_shares,
                cpu_period=limits.cpu_period,
                cpu_quota=limits.cpu_quota,
                cpuset_cpus=limits.cpuset_cpus,
                cpuset_mems=limits.cpuset_mems,
                cgroup_parent=limits.cgroup_parent,
                ulimits=list(limits.ulimits) or None,
            ),
        )
        container, _warnings = await run_in_threadpool(
            self.containers.create_from, state.image, request, None
        )
        if announce:
            self._stream(f" ---> Running in {container.short_id}\n")
        return container

    async def _commit(
        self,
        state: StageState,
        container: Container,
        config: ContainerConfig,
        probe: ContainerConfig,
        changed_files: bool,
        announced: bool = True,
    ) -> None:
        parent = state.image
        snapshot = None
        if changed_files:
            parents = self.images.layer_keys(parent)
            snapshot = Snapshot(container.snapshot, tuple(parents))
        image_config = attrs.evolve(config, image=parent.id if parent is not None else "")
        change = ImageChange(
            parent=parent,
            config=config_json(image_config),
            snapshot=snapshot,
            created_by=" ".join(probe.cmd or ()),
            author=state.maintainer,
            container_id=container.id,
            container_config=config_json(attrs.evolve(probe, hostname=container.short_id)),
        )
        image = await run_in_threadpool(commit_image, self.images, change)
        if self.options.remove:
            await self._remove(container, announced)
        state.image, state.config = image, config
        self._image_line(image)

    async def _remove(self, container: Container, announced: bool) -> None:
        await self.containers.remove(container.id, force=True, remove_volumes=True)
        if announced:
            self._stream(f"Removing intermediate container {container.short_id}\n")

    async def _failed(
        self, container: Container, error: StepFailed, announced: bool = True
    ) -> StepFailed:
        """Clean up after a failed step as dockerd does: only ``forcerm`` removes its container."""
        if self.options.force_remove:
            with contextlib.suppress(DockyardError):
                await self._remove(container, announced)
        return error

    # ---------------------------------------------------------------- RUN

    async def _run(self, state: StageState, command: cmd.Run) -> None:
        words = list(command.command)
        if command.shell_form:
            words = [*self._shell(state.config), *words]
        env = _env_dict(state.config.env)
        build_args = {
            name: value
            for name, value in {**self._predefined(), **self._known(state.args)}.items()
            if name not in env
        }
        pairs = [f"{name}={value}" for name, value in sorted(build_args.items())]
        saved = [f"|{len(pairs)}", *pairs, *words] if pairs else words
        probe = attrs.evolve(self._probe(state, state.config, saved), entrypoint=None)
        if await self._cached(state, state.config, probe):
            return
        run_config = attrs.evolve(
            state.config,
            cmd=words,
            entrypoint=[""],
            env=[*(state.config.env or []), *pairs],
        )
        container = await self._container(state, run_config, announce=True)
        code = await self._run_container(container)
        if code != 0:
            raise await self._failed(
                container,
                StepFailed(
                    f"The command '{' '.join(words)}' returned a non-zero code: {code}", code
                ),
            )
        await self._commit(state, container, state.config, probe, changed_files=True)

    def _predefined(self) -> dict[str, str]:
        """Proxy settings given as build args reach ``RUN`` without an ``ARG`` (and, as in
        docker, stay out of the image's history unless declared)."""
        found = {}
        for name in cmd.PREDEFINED_ARGS:
            value = self.options.build_args.get(name)
            if value is not None:
                self._consumed.add(name)
                found[name] = value
        return found

    async def _run_container(self, container: Container) -> int:
        waiter = self.containers.wait_future(container.id, "next-exit")
        output = self.containers.open_output(container)
        try:
            await self.containers.start(container.id)
        except StartFailed as exc:
            output.close()
            waiter.cancel()
            raise await self._failed(container, StepFailed(exc.message)) from None
        async for entry in output.follow(waiter.done, wake=self.containers.live(container).exited):
            text = entry.data.decode(errors="replace")
            if entry.stream == "stderr":
                text = f"{STDERR_START}{text}{STDERR_END}"
            self._stream(text)
        result = await waiter
        return int(result["StatusCode"])

    # ---------------------------------------------------------------- COPY, ADD, WORKDIR

    @contextlib.contextmanager
    def _mounted(self, container: Container, parent: ImageRecord | None) -> Iterator[Path]:
        """The container's filesystem, mounted on the host while the block runs (it is not
        running, so its snapshot is mounted nowhere else)."""
        driver = self.images.driver
        parents = self.images.layer_keys(parent)
        with tempfile.TemporaryDirectory(prefix="dockyard-build-") as target:
            mount_all(driver.mounts(container.snapshot, parents), target)
            try:
                yield Path(target)
            finally:
                unmount_all(target)

    @contextlib.contextmanager
    def _image_root(self, image: ImageRecord) -> Iterator[Path]:
        """An image's filesystem, read from a snapshot made for the block (``COPY --from``)."""
        driver = self.images.driver
        key = f"build-source-{secrets.token_hex(16)}"
        parents = self.images.layer_keys(image)
        with tempfile.TemporaryDirectory(prefix="dockyard-build-") as target:
            mounts = driver.prepare(key, parents)
            try:
                mount_all(mounts, target)
                try:
                    yield Path(target)
                finally:
                    unmount_all(target)
            finally:
                driver.remove(key)

    async def _source_image(self, name: str) -> ImageRecord:
        if name.isdigit() and name not in self._stages:
            raise StepFailed(f"invalid from flag value {name}: refers to current build stage")
        if name.lower() in self._stages:
            image = self._stages[name.lower()]
            if image is None:
                raise StepFailed(f"stage {name} has no filesystem to copy from")
            return image
        return await self._base_image(name)

    async def _copy(self, state: StageState, command: cmd.Copy) -> None:
        name = "ADD" if command.is_add else "COPY"
        if not command.from_stage:
            await self._copy_from(state, command, name, self.context.sources())
            return
        source_image = await self._source_image(command.from_stage)
        # What an image holds never changes: a digest computed once is good for every build,
        # and a cached step then needs no mount of the image at all.
        key = (source_image.id, name, command.sources)
        known = self.source_digests.get(key)
        if known is not None and await self._cached(
            state, state.config, self._copy_probe(state, command, name, known)
        ):
            return
        with self._image_root(source_image) as root:
            await self._copy_from(state, command, name, SourceTree(root), key)

    def _select(
        self, tree: SourceTree, command: cmd.Copy, name: str, downloads: Path
    ) -> list[Source]:
        """The sources of a COPY or ADD; ADD's URLs are downloaded into ``downloads``."""
        sources: list[Source] = []
        for pattern in command.sources:
            if command.is_add and is_url(pattern):
                sources.append(fetch_url(pattern, downloads))
            else:
                sources.extend(tree.select([pattern], name))
        return sources

    def _copy_probe(
        self, state: StageState, command: cmd.Copy, name: str, copied: str
    ) -> ContainerConfig:
        """The config a COPY or ADD commits: its history names the files' checksum
        (``copied``: ``file:<hex>``, ``dir:<hex>`` or ``multi:<hex>``), as dockerd's does."""
        flags = "".join(
            f" --{flag}={value}"
            for flag, value in (("chown", command.chown), ("chmod", command.chmod))
            if value
        )
        comment = f"#(nop) {name}{flags} {copied} in {command.destination} "
        return self._probe(state, state.config, [*self._shell(state.config), comment])

    async def _copy_from(
        self,
        state: StageState,
        command: cmd.Copy,
        name: str,
        tree: SourceTree,
        digest_key: tuple[str, str, tuple[str, ...]] | None = None,
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="add-", dir=self.context.directory.parent) as got:
            try:
                sources = await run_in_threadpool(self._select, tree, command, name, Path(got))
                digest = (await run_in_threadpool(checksum, sources)).removeprefix("sha256:")
            except InvalidParameter as exc:
                raise StepFailed(exc.message) from None
            kind = "multi" if len(sources) > 1 else "dir" if sources[0].is_dir else "file"
            if digest_key is not None:
                self.source_digests.put(digest_key, f"{kind}:{digest}")
            probe = self._copy_probe(state, command, name, f"{kind}:{digest}")
            if await self._cached(state, state.config, probe):
                return
            container = await self._container(state, probe, announce=False)
            try:
                with self._mounted(container, state.image) as root:
                    await run_in_threadpool(
                        copy_sources,
                        sources,
                        str(root),
                        command.destination,
                        state.config.working_dir or "/",
                        command.chown,
                        command.chmod,
                        command.is_add,
                        self._id_maps(),
                    )
            except InvalidParameter as exc:
                raise await self._failed(container, StepFailed(exc.message), False) from None
        await self._commit(
            state, container, state.config, probe, changed_files=True, announced=False
        )

    def _id_maps(self) -> IdMaps | None:
        """Under user namespace remapping, files written into a container belong to the
        host ids its root and users map to."""
        namespace = self.containers.settings.user_namespace
        if namespace is None:
            return None
        return IdMaps(namespace.uid_mappings, namespace.gid_mappings)

    async def _workdir(self, state: StageState, command: cmd.Workdir) -> None:
        change = apply_change(state.config, command)
        config, path = change.config, change.config.working_dir
        # WORKDIR's history has one space after "#(nop)", unlike the others (dockerd's).
        probe = self._probe(state, config, [*self._shell(state.config), f"#(nop) {change.comment}"])
        if await self._cached(state, config, probe):
            return
        container = await self._container(state, probe, announce=True)
        with self._mounted(container, state.image) as root:
            maps = self._id_maps()
            owner = maps.to_host(0, 0) if maps is not None else (0, 0)
            await run_in_threadpool(make_directories, str(root), path, owner)
        # An existing directory changes nothing: the commit then records no layer.
        await self._commit(state, container, config, probe, changed_files=True)
