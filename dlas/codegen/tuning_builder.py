"""The builder of a MetaSchedule run for `autoschedule`: one pool of worker processes for
the whole run, and the build and export functions its workers run (closures, so the workers
unpickle them without importing dlas)."""
from __future__ import annotations

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms


def candidate_builder():
    """The builder's build function: TVM's default without importing every tensor intrinsic
    (`tvm.s_tir.tensor_intrin` takes 33 s to import here, in each fresh builder process;
    DLAS's search spaces do not tensorize). A closure, so the workers get it by value: a
    module-level function is pickled by name and each worker would import dlas (and torch's
    models with it) for it, ~4 s of a 2-core machine."""

    def build(mod, target, _params):
        from tvm.driver import build as tvm_build
        from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

        return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod),
                         target=target)

    return build


@derived_object
class PooledBuilder(ms.builder.PyBuilder):
    """MetaSchedule's LocalBuilder with one pool of worker processes for a whole tuning run.

    LocalBuilder starts a fresh pool on every build() call and sanity-checks in one more
    (TVM's guard against a memory leak of long-lived workers): each worker imports TVM,
    ~8 s on a 2-core machine, paid again for the default schedules, every search round and
    the side-by-side check. Here the workers start once (lazily) and each is recycled after
    `max_uses` builds, which bounds the leak the same way; a timed-out or crashed worker is
    restarted on its next build, as there. start() starts them early, close() stops them."""

    def __init__(self, max_workers: int, timeout_sec: float, f_build, f_export,
                 max_uses: int = 64):
        from tvm.support.popen_pool import PopenPoolExecutor  # noqa: PLC0415

        super().__init__()
        self.max_workers, self.timeout_sec = max_workers, timeout_sec
        self.f_build, self.f_export = f_build, f_export
        self.pool = PopenPoolExecutor(max_workers=max_workers, timeout=timeout_sec,
                                      maximum_process_uses=max_uses)
        self.starting: list = []  # start()'s jobs

    def build(self, build_inputs: list[ms.builder.BuilderInput]
              ) -> list[ms.builder.BuilderResult]:
        from tvm.s_tir.meta_schedule.builder import local_builder  # noqa: PLC0415
        from tvm.support.popen_pool import StatusKind  # noqa: PLC0415

        work = local_builder._worker_func  # (a lambda below: pickled by value, as in TVM)
        results = []
        for done in self.pool.map_with_error_catching(
                lambda x: work(*x),
                [(self.f_build, self.f_export, i.mod, i.target,
                  local_builder._serialize_params(i.params)) for i in build_inputs]):
            if done.status == StatusKind.COMPLETE:
                results.append(ms.builder.BuilderResult(done.value, None))
            elif done.status == StatusKind.TIMEOUT:
                results.append(ms.builder.BuilderResult(
                    None, f"LocalBuilder: Timeout, killed after {self.timeout_sec} seconds"))
            else:
                results.append(ms.builder.BuilderResult(
                    None, "LocalBuilder: An exception occurred\n" + str(done.value)))
        # every worker done starting: none still importing while the runner times
        for job in self.starting:
            job.exception()
        self.starting = []
        return results

    def start(self) -> None:
        """Start every worker now, without waiting: their imports of TVM then overlap
        whatever comes before the first build (the RPC runner's start)."""
        self.starting = [self.pool.submit(int) for _ in range(self.max_workers)]

    def close(self) -> None:
        self.pool.shutdown()


def exporter(cc: str | None):
    """The builder's export function: a shared library, cross-compiled when `cc` is set.
    A closure, so the builder's worker processes get it by value (no dlas import there)."""

    def export(mod) -> str:
        import os as _os
        import tempfile as _tempfile

        from tvm.support import cc as _cc

        path = _os.path.join(_tempfile.mkdtemp(), "tuning_candidate.so")
        mod.export_library(path, fcompile=_cc.cross_compiler(cc) if cc else None)
        return path

    return export
