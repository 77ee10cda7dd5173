"""Turn the results store into a report: `python report.py [report.where=...] [report.sweep=latest]`."""
import sys

from dlas.cli import entry


def run(cfg, sweep=None):
    import pandas as pd
    from omegaconf import OmegaConf

    from dlas.report import load, profiles, write_report
    from dlas.report.search import load_search
    from dlas.report.wandb_summary import log_summary

    where = cfg.report.where
    where = OmegaConf.to_container(where) if OmegaConf.is_config(where) else where
    df, info = load(cfg.paths.results, where=where, sweep=cfg.report.sweep,
                    rows=cfg.paths.get("rows"))
    if info["taken_in"]:
        print(f"results store: took in {info['taken_in']} rows from row files", flush=True)
    search = load_search(cfg.paths.results, cfg.report.search)
    layer_profiles = profiles.load(cfg.paths.results, df)
    report = write_report(df, info, cfg.report.out, search=search,
                          layer_profiles=layer_profiles)
    counts = ", ".join(f"{n} {s}" for s, n in info["status"].items())
    print(f"report: {report.html} ({info['points']} points: {counts})", flush=True)
    for _, r in report.tables.get("search_vs_grid.csv", pd.DataFrame()).iterrows():
        print(f"  {r['what']}: hypervolume {r['hypervolume']:.6g} ({r['of_grid']:.1%} of the "
              f"grid's), {r['on_front']} on the front", flush=True)
    if layer_profiles:
        print(f"per-layer profile of {len(layer_profiles)} points (ms per kernel, timed alone; "
              "profile.csv has every call):", flush=True)
        print(profiles.text(report.tables["profile_side_by_side.csv"]), flush=True)
    for obs in report.observations:
        print(f"  [{obs.verdict}] {obs.claim}: {obs.statistic}", flush=True)
    if cfg.report.wandb:
        where_logged = log_summary(report, df, project=cfg.logger.project, mode=cfg.logger.mode,
                                   entity=cfg.logger.get("entity"), directory=cfg.paths.wandb)
        if where_logged:
            print(f"W&B summary run: {where_logged}", flush=True)
    return report


def quote_where(argv: list[str]) -> list[str]:
    """`report.where=hardware=local,model=a,b` as one string: unquoted, Hydra's override
    grammar rejects the inner `=` and would read the commas as a sweep."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key == "report.where" and sep and value and value[0] not in "'\"[{":
            arg = f"{key}='{value}'"
        out.append(arg)
    return out


_main = entry("report", run)


def main():
    sys.argv[1:] = quote_where(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
