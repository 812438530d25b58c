"""``opencmap process``: Level 3, 2 or 1 → Level 4 and Level 5 (thin shell over run_pipeline)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from opencmap.cli.scheduler import scheduler_option

__all__ = ["command"]


def _csv(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.command("process")
@click.argument("matrix", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--inst-info", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instance table (GEO inst_info); default: the matrix's column metadata.")
@click.option("--gene-info", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Gene table adding row annotation (pr_is_lm) by pr_gene_id.")
@click.option("--level", "start_level", type=click.Choice(["1", "2", "3", "4"]), default=None,
              help="Level of the input: 4/3/2 = a GCTX/GCT matrix (4: plate z-scores, collapsed to Level 5 only), "
                   "1 = a folder of LXB files. Default: 3 (or the --params file's start_level).")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file of pipeline parameters (PipelineParams fields; the Level 1-3 steps' nested as "
                   "dpeak, flip, liss, censor objects), or a manifest.json of an earlier run to repeat its "
                   "parameters. The options below override it.")
@click.option("--plate-map", "plate_maps", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="With --level 1: a plate map (.map) or a folder of them; repeat for several plates "
                   "(default: the .map files in the LXB folders).")
@click.option("--chip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --level 1: chip file mapping analytes to genes (default: the bundled L1000_EPSILON.R2.chip).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="With --level 1: k-means seed of the bead deconvolution (same seed, same output).")
@click.option("--inference-model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --level 1 or 2: inference model file adding inferred genes to Level 3.")
@click.option("--peak-method", type=click.Choice(["kmeans_viable", "kspeak"]),
              help="With --level 1: peak calling, CMap's k-means (default) or kernel-density peaks (deterministic).")
@click.option("--no-flip", is_flag=True, help="With --level 1: skip the flip correction after peak calling.")
@click.option("--no-censor", is_flag=True,
              help="With --level 1 or 2: keep every well (censored.txt still lists what would be dropped, and why).")
@click.option("--zscore", "zscore_method", type=click.Choice(["zspc", "zsvc"]),
              help="Robust z-scores against the whole plate (zspc, default) or its vehicle wells (zsvc).")
@click.option("--min-mad", type=float, help="MAD floor in log2 units (default 0.1).")
@click.option("--var-adjustment", type=click.Choice(["fixed", "estimate", "none"]), help="MAD floor rule (default fixed).")
@click.option("--estimate-prct", type=float, help="Percentile of the genes' MADs used as floor by --var-adjustment estimate (default 1).")
@click.option("--group-by", help="Comma-separated replicate grouping fields (default cell_id,pert_id,pert_dose,pert_time).")
@click.option("--replicate-set-pattern", help="Regex with a (?P<set>...) group mapping rna_plate to its replicate set.")
@click.option("--consensus", type=click.Choice(["modz", "wt_stouffer", "avgz", "medianz", "stoufz"]),
              help="Replicate consensus (default modz).")
@click.option("--weights", type=click.Choice(["matlab", "cmappy"]),
              help="MODZ weights: MATLAB half-sum (default) or cmapPy mean with 4-decimal rounding.")
@click.option("--nan-policy", type=click.Choice(["raise", "omit"]), help="Missing values in Level 3 (default raise).")
@click.option("--cgs/--no-cgs", default=None, help="Build consensus gene signatures for shRNAs (default on).")
@click.option("--cgs-target-field", help="Signature field naming the knocked-down gene (default pert_iname).")
@click.option("--no-self-rank", is_flag=True, help="Skip pct_self_rank_q25 (and so is_gold).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), help="Work folder (default OUT_DIR/.opencmap-work).")
@click.option("--keep-work", is_flag=True, help="Keep the work folder after success.")
@click.option("--restart", is_flag=True, help="Discard an unfinished earlier run instead of resuming it.")
@click.option("--progress/--no-progress", default=True,
              help="Progress on stderr: bars on a terminal, a plain line every 30 s otherwise (OPENCMAP_PROGRESS_SECONDS).")
@scheduler_option
def command(
    matrix: Path,
    out_dir: Path,
    inst_info: Path | None,
    gene_info: Path | None,
    start_level: str | None,
    params_file: Path | None,
    plate_maps: tuple[Path, ...],
    chip: Path | None,
    seed: int,
    inference_model: Path | None,
    peak_method: str | None,
    no_flip: bool,
    no_censor: bool,
    zscore_method: str | None,
    min_mad: float | None,
    var_adjustment: str | None,
    estimate_prct: float | None,
    group_by: str | None,
    replicate_set_pattern: str | None,
    consensus: str | None,
    weights: str | None,
    nan_policy: str | None,
    cgs: bool | None,
    cgs_target_field: str | None,
    no_self_rank: bool,
    work_dir: Path | None,
    keep_work: bool,
    restart: bool,
    progress: bool,
    scheduler: str | None,
) -> None:
    """Process MATRIX (Level 3; Level 4 with --level 4; Level 2 with --level 2; LXB folder with --level 1) into OUT_DIR: level4.gctx, level5.gctx,
    sig_info.txt, manifest.json (and censored.txt from Level 2 or 1).

    \b
    With --level 1, MATRIX is a folder of LXB bead files:
      LXB_DIR/<plate>_<well>.lxb              one detection plate, or
      LXB_DIR/<plate>/<plate>_<well>.lxb      one sub-folder per plate (CMap's lxb/ layout);
    each plate needs a plate map: --plate-map PLATE.map (repeatable) or --plate-map MAP_DIR with
    <plate>.map files (or maps with a det_plate column). Plates are deconvolved (Level 2 written
    to OUT_DIR/level2/), LISS-scaled per bead set, censored, quantile-normalised, z-scored and
    collapsed into MODZ signatures. Example:
      opencmap process --level 1 lxb/ out/ --plate-map map/

    Runs plate by plate and replicate set by replicate set; an interrupted run resumes where it
    stopped when started again with the same arguments. With --scheduler, plates, replicate sets
    and CGS batches run on a Dask cluster whose workers see MATRIX, OUT_DIR and the work folder at
    the same paths; the outputs are identical.
    """
    from opencmap.pipeline.params import PipelineParams, read_params
    from opencmap.pipeline.run import run_pipeline

    weight_options: dict[str, Any] = {}
    if weights == "cmappy":
        weight_options = {"weight_method": "mean", "round_weights": 4}
    elif weights == "matlab":
        weight_options = {"weight_method": "sum"}
    base = read_params(params_file) if params_file is not None else PipelineParams()
    step_options: dict[str, Any] = {}
    if peak_method is not None:
        step_options["dpeak"] = dataclasses.replace(base.dpeak, method=peak_method)
    if no_censor:
        step_options["censor"] = base.censor.replace(drop=())
    params = base.replace(
        start_level=int(start_level) if start_level is not None else None,
        zscore_method=zscore_method,
        min_mad=min_mad,
        var_adjustment=var_adjustment,
        estimate_prct=estimate_prct,
        group_by=_csv(group_by),
        replicate_set_pattern=replicate_set_pattern,
        consensus=consensus,
        nan_policy=nan_policy,
        cgs=cgs,
        cgs_target_field=cgs_target_field,
        self_rank=False if no_self_rank else None,
        **weight_options,
        **step_options,
    )
    if no_flip:
        params = dataclasses.replace(params, flip=None)
    from opencmap.cli.progress import Progress
    from opencmap.cli.scheduler import backend_for

    backend = backend_for(scheduler)
    bars = Progress(enabled=progress, leave=True)
    try:
        result = run_pipeline(
            matrix,
            out_dir,
            inst_info=inst_info,
            gene_info=gene_info,
            params=params,
            inference_model=inference_model,
            plate_maps=list(plate_maps) or None,
            chip=chip,
            seed=seed,
            work_dir=work_dir,
            keep_work=keep_work,
            restart=restart,
            progress=bars,
            backend=backend,
        )
    finally:
        bars.close()
    click.echo(
        f"{result.n_instances} instances on {result.n_plates} plates -> {result.n_signatures} signatures "
        f"(+{result.n_cgs} CGS) in {result.n_replicate_sets} replicate sets"
    )
    if result.resumed_plates or result.resumed_sets:
        click.echo(f"resumed: {result.resumed_plates} plates and {result.resumed_sets} replicate sets were already done")
    for path in (result.level4, result.level5, result.sig_info, result.manifest):
        click.echo(str(path))
