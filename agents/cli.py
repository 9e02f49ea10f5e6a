"""`evchain`: command-line entry point.

Exit codes: 0 success; 2 bad input (the one-line error names file and field);
1 an internal error; 3 a review change refused (stale revision, or a closed version). `batch` exits 2 if any case had bad input and 1 if any
case failed otherwise; the other cases still finish and every case is listed in
`batch_summary.json`. `embed-slides` likewise exits 2 if any slide failed, after the others finished.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from agents.context import Settings
from schemas.errors import InputError

DEMO_COHORT = Path("demo_cohort")
DEFAULT_MODEL = "glioma_demo"
DEMO_OUT = Path("out")
# Far above a real case (seconds to a few minutes with raw slides); only a hang reaches it.
DEFAULT_CASE_TIMEOUT_S = 3600.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _family(model: str):
    """The registered model family `model`; an unknown name is bad input on --model."""
    from fusion_models.registry import model_family

    try:
        return model_family(model)
    except ValueError as error:
        raise InputError("--model", "model", str(error)) from None


def _run_model(args: argparse.Namespace) -> str:
    """--model, else the family the --checkpoint holds (read from its content), else the default model."""
    if args.model is not None:
        return args.model
    if args.checkpoint is not None:
        from fusion_models.checkpoints import checkpoint_family

        return checkpoint_family(Path(args.checkpoint))[0]
    return DEFAULT_MODEL


def _settings(args: argparse.Namespace) -> Settings:
    model = _run_model(args)
    # Without --checkpoint the checkpoint follows --model: checkpoints/<model>.<its family's suffix>.
    checkpoint = args.checkpoint or _family(model).default_checkpoint()
    return Settings(
        checkpoint=checkpoint,
        fusion_model=model,
        lang=getattr(args, "lang", "en"),
        encoder=args.encoder,
        encoder_weights=args.encoder_weights,
        knowledge_source=args.knowledge,
        drafting_backend=args.drafting,
        llm_model=args.llm_model,
        llm_base_url=args.llm_base_url,
        interactive_review=getattr(args, "review", False),
        review_db=getattr(args, "review_db", None),
        figures=not getattr(args, "no_figures", False),
        imaging_features=getattr(args, "imaging_features", False),
    )


def _require_checkpoint(settings: Settings) -> tuple[str, ...]:
    """Fail early, naming the file, before any case runs: a missing or unreadable checkpoint, or another model's.

    -> the modalities the checkpoint's model reads (a family's heads trained on other data read other ones).
    """
    from fusion_models.checkpoints import load_checkpoint

    return load_checkpoint(Path(settings.checkpoint), expected=settings.fusion_model).reads()


def masked_branches_note(case_dirs: Sequence[Path], model: str, reads: Sequence[str] | None = None) -> str | None:
    """One line when cases lack inputs `model` reads, so that running it with those branches masked is never silent.

    Not an error: a missing modality is reported, not refused, and every report flags it. The
    line says which model runs, how many cases lack what, and which registered models read
    only what those cases have. `reads`: what the loaded checkpoint reads (default: the registered config).
    """
    from fusion_models.inputs import bundle_modalities
    from fusion_models.registry import list_model_families, model_family
    from schemas.common import MODALITIES

    def branches(name: str) -> set[str]:
        return set(model_family(name).reads()) - {"clinical"}  # clinical fields come with every case.json

    reads = tuple(reads or model_family(model).reads())
    needed = set(reads) - {"clinical"}
    lacking = [(needed - have, have) for have in map(bundle_modalities, case_dirs) if needed - have]
    if not lacking:
        return None
    missing = sorted(set().union(*(gap for gap, _ in lacking)), key=MODALITIES.index)
    common = set.intersection(*(have for _, have in lacking))
    fitting = [n for n in list_model_families() if n != model and branches(n) and branches(n) <= common]
    alternative = f"; registered models that read only what they have: {', '.join(fitting)} (--model NAME)" if fitting else ""
    return (
        f"note: {model} reads {', '.join(reads)}; {len(lacking)} of {len(case_dirs)} "
        f"cases lack {' and '.join(missing)}, so it runs on them with those branches masked and their reports "
        f"flag the missing modalities{alternative}"
    )


def _note_masked_branches(case_dirs: Sequence[Path], model: str, reads: Sequence[str]) -> None:
    note = masked_branches_note(case_dirs, model, reads)
    if note:
        print(f"evchain: {note}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from agents.runner import run_case

    settings = _settings(args)
    reads = _require_checkpoint(settings)
    _note_masked_branches([Path(args.case_dir)], settings.fusion_model, reads)
    result = run_case(Path(args.case_dir), Path(args.out), settings, timeout_s=args.case_timeout or None)
    if result.status != "ok":
        where = f" (traceback: {result.log})" if result.log else ""
        print(f"evchain: error: {result.error}{where}", file=sys.stderr)
    else:
        print(f"{result.case_id}: {result.outputs.get('report.json')}")
    return result.exit_code


def cmd_batch(args: argparse.Namespace) -> int:
    from agents.runner import list_case_dirs, run_batch
    from agents.summary import exit_code, print_summary

    settings = _settings(args)
    reads = _require_checkpoint(settings)
    case_dirs = list_case_dirs(Path(args.cohort_dir), exclude=Path(args.out))
    _note_masked_branches(case_dirs, settings.fusion_model, reads)
    results = run_batch(
        Path(args.cohort_dir),
        Path(args.out),
        settings,
        workers=args.workers,
        engine=args.engine,
        force=args.force,
        timeout_s=args.case_timeout or None,
        address=args.address,
        progress=not args.quiet,
    )
    print_summary(results, Path(args.out))
    return exit_code(results)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from demo.cohort import build_demo_cohort

    ids = build_demo_cohort(Path(args.out), n_cases=args.n_cases, seed=args.seed)
    print(f"wrote {len(ids)} demo cases to {Path(args.out) / 'cases'}")
    return 0


def _training_data(args: argparse.Namespace):
    """--data: a labelled cohort folder; without it, the in-memory demo cohort."""
    from fusion_models.registry import TrainingData

    if args.data is not None:
        return TrainingData(f"labelled cohort {args.data}", folder=Path(args.data))
    from demo.training import demo_training_data

    return demo_training_data(args.n_cases, args.seed)


def _model_with_head(head: str) -> str:
    """The registered family that offers fusion head `head` (the default model first)."""
    from fusion_models.registry import list_model_families, model_family

    names = sorted(list_model_families(), key=lambda n: n != DEFAULT_MODEL)
    offering = [n for n in names if head in model_family(n).fusion_heads()]
    if not offering:
        known = sorted({h for n in names for h in model_family(n).fusion_heads()})
        raise InputError("--head", "head", f"no registered model has fusion head {head!r}; heads: {', '.join(known)}")
    return offering[0]


def train(
    head: str | None, data, *, model: str | None = None, out: Path | None = None, epochs: int, seed: int,
    progress: bool = True,
):
    """`evchain train`: the family `model` (else the one offering `head`) trains on `data`, writes its checkpoint."""
    model = model or (_model_with_head(head) if head is not None else DEFAULT_MODEL)
    family = _family(model)
    heads = family.fusion_heads()
    if head is not None and head not in heads:
        known = ", ".join(heads) or "none"
        raise InputError("--head", "head", f"model {model} has no fusion head {head!r}; its heads: {known}")
    out = out or family.default_checkpoint()
    return family.train(out, data, epochs=epochs, seed=seed, head=head, progress=progress)


def cmd_train(args: argparse.Namespace) -> int:
    result = train(args.head, _training_data(args), model=args.model, out=args.out, epochs=args.epochs, seed=args.seed)
    print(result.summary())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the demo cohort and the demo model when missing, then report every case."""
    from agents.runner import run_batch
    from agents.summary import exit_code, print_summary
    from demo.cohort import build_demo_cohort
    from demo.training import demo_training

    settings = _settings(args)
    cohort = Path(args.cohort)
    if not (cohort / "cases").is_dir():
        build_demo_cohort(cohort, n_cases=args.n_cases, seed=args.seed)
    if not Path(settings.checkpoint).exists():
        print(f"no checkpoint at {settings.checkpoint}: training {settings.fusion_model} on the demo cohort",
              file=sys.stderr)
        result = demo_training(Path(settings.checkpoint), seed=args.seed, model=settings.fusion_model)
        print(result.summary(), file=sys.stderr)
    _require_checkpoint(settings)
    results = run_batch(cohort, Path(args.out), settings, timeout_s=args.case_timeout or None)
    print_summary(results, Path(args.out))
    return exit_code(results)


def cmd_embed_slides(args: argparse.Namespace) -> int:
    """Patch features of every slide in SLIDES_DIR, one HDF5 each; exit 2 if any slide failed (the others finish)."""
    from fusion_models.encoders import create_encoder
    from fusion_models.pathology.embedding import embed_slides, list_slides

    slides = list_slides(Path(args.slides_dir))
    try:
        encoder = create_encoder(args.encoder, weights=args.encoder_weights)
    except ValueError as error:  # an unknown name; weights problems are InputErrors already
        if isinstance(error, InputError):
            raise
        raise InputError("--encoder", "encoder", str(error)) from None
    outcomes = embed_slides(
        slides, Path(args.out), encoder,
        batch_size=args.batch_size, workers=args.workers, tissue_threshold=args.tissue_threshold,
        progress=not args.quiet,
    )
    for outcome in outcomes:
        detail = f"{outcome.patches} patches" if outcome.status == "embedded" else outcome.status
        print(f"{outcome.slide}: {detail}" if outcome.error is None else f"{outcome.slide}: failed")
    failed = [o for o in outcomes if o.error is not None]
    for outcome in failed:
        print(f"evchain: error: {outcome.error}", file=sys.stderr)
    return 2 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from evals.run import format_table, run_eval

    result = run_eval(Path(args.cohort_dir), Path(args.reports_dir), Path(args.out) if args.out else None)
    print(format_table(result))
    # Every readable case was scored; each file that could not be read is named on its own line, exit 2.
    skipped = {"report": result.unreadable_reports, "reference": result.unreadable_references}
    for what, errors in skipped.items():
        for error in errors.values():
            print(f"evchain: error: {what} skipped: {error}", file=sys.stderr)
    return 2 if any(skipped.values()) else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from review_app.server import serve

    # A review step re-runs a case with the settings in its provenance; only the review store is the server's.
    serve(Path(args.out), Settings(review_db=args.review_db), host=args.host, port=args.port)
    return 0


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")  # piped: one line, for scripts
    import getpass

    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise InputError("evchain users add", "password", "the two entries differ")
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from review_app.accounts import AccountError, AccountStore

    out = Path(args.out)
    if not out.is_dir():
        raise InputError("evchain users add", "--out", f"{out} is not a folder of reports")
    try:
        user = AccountStore(out).add_user(args.name, args.role, _read_password())
    except AccountError as err:
        raise InputError("evchain users add", *str(err).split(": ", 1)) from None
    print(f"added {user.name} ({user.role}) to {out}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from agents.review.cli import run_review_command

    return run_review_command(args)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="registered model family; the checkpoint must hold it (default: the one --checkpoint holds, "
                        f"else {DEFAULT_MODEL})")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model checkpoint, read by content (default checkpoints/<model>.pt|.json)")
    p.add_argument("--encoder", default="hed_texture", help="registered patch encoder for raw slides")
    p.add_argument("--encoder-weights", type=Path, default=None, help="local weights for the patch encoder")
    p.add_argument("--knowledge", default="bundled", help="registered knowledge source")
    p.add_argument("--drafting", default="deterministic",
                   help="drafting backend: deterministic (templates), transformers (local folder), openai (server)")
    p.add_argument("--llm-model", default=None,
                   help="language model: a local model folder (transformers) or the served model name (openai)")
    p.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint (openai), e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--lang", choices=("en", "zh"), default="en", help="language of report.html")
    p.add_argument("--no-figures", action="store_true", help="render no pictures (MRI, slide, markers) into the report")
    p.add_argument("--imaging-features", action="store_true",
                   help="write imaging_features.json: radiomics per habitat (needs pyradiomics), margin bands")
    p.add_argument("--case-timeout", type=float, default=DEFAULT_CASE_TIMEOUT_S,
                   help="seconds one case may take before it is stopped as an error (0: no limit)")
    p.add_argument("--review", action="store_true",
                   help="pause each case for a clinician after writing its draft (see `evchain review`)")
    p.add_argument("--review-db", default=None,
                   help="postgresql:// URL of the review checkpointer (default: a SQLite file in --out)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evchain", description="Evidence-chain reports for tumour boards.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("report", help="write the report of one case folder")
    p.add_argument("case_dir")
    p.add_argument("--out", required=True)
    _add_run_options(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("batch", help="write reports for every case folder of a cohort")
    p.add_argument("cohort_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=_positive_int, default=1, help="cases run in parallel (processes, or Ray CPUs)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local processes, or Ray tasks")
    p.add_argument("--address", default=None, help="Ray cluster address for --engine ray (default: a local Ray)")
    p.add_argument("--force", action="store_true", help="redo cases whose report is up to date")
    _add_run_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("demo", help="build the demo cohort and model if missing, then report every demo case")
    p.add_argument("--cohort", default=str(DEMO_COHORT))
    p.add_argument("--out", default=str(DEMO_OUT))
    p.add_argument("--n-cases", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("demo-data", help="build the deterministic demo cohort")
    p.add_argument("out")
    p.add_argument("--n-cases", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser(
        "train", help="train a registered model family: the demo fusion model, a fusion head (--head NAME), "
                      "or tcga_glioma on a labelled cohort",
    )
    p.add_argument("--model", default=None,
                   help=f"registered model family (default: the one offering --head, else {DEFAULT_MODEL})")
    p.add_argument("--head", default=None,
                   help="fusion head to train: attention_mil (glioma_demo) or any head registered in "
                        "fusion_models.fusion_heads (glioma_heads); default: the family's own")
    p.add_argument("--data", type=Path, default=None, help="labelled cohort (labels.csv + cases/); default: the in-memory demo cohort")
    p.add_argument("--out", type=Path, default=None, help="checkpoint path (default checkpoints/<model>.pt|.json)")
    p.add_argument("--n-cases", type=int, default=300)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "embed-slides", help="patch features of every slide in a folder: one CLAM/TRIDENT-layout HDF5 per slide"
    )
    p.add_argument("slides_dir", help="folder of slides (.tif, .tiff, .svs, .ndpi)")
    p.add_argument("--encoder", required=True, help="registered patch encoder (uni, conch, virchow, ctranspath, ...)")
    p.add_argument("--encoder-weights", type=Path, default=None, help="local weights for the patch encoder")
    p.add_argument("--out", required=True, help="folder for <slide>.h5 (a case's pathology/ folder, for reports)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="tiles per forward pass")
    p.add_argument("--workers", type=_non_negative_int, default=1,
                   help="DataLoader processes reading and preprocessing tiles (0: in-process)")
    p.add_argument("--tissue-threshold", type=float, default=0.5, help="least tissue fraction of a kept patch")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_embed_slides)

    p = sub.add_parser("review", help="list, show, edit, approve, reject or reopen reports paused for review")
    from agents.review.cli import add_review_arguments

    add_review_arguments(p)
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("eval", help="compare reports with reference reports and ground truth")
    p.add_argument("cohort_dir")
    p.add_argument("reports_dir")
    p.add_argument("--out", default=None, help="folder for eval_report.md/.html/.json")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("serve", help="the review web app over an output folder")
    p.add_argument("--out", required=True, help="output folder of a batch (reports and the review store)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (non-loopback needs an admin account)")
    p.add_argument("--port", type=_positive_int, default=8000)
    p.add_argument("--review-db", default=None,
                   help="postgresql:// URL of the review checkpointer (default: the SQLite file in --out)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("users", help="review-app accounts")
    users = p.add_subparsers(dest="users_command", required=True)
    p = users.add_parser("add", help="add an account; the password is read from a prompt, or one line of stdin")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=("viewer", "clinician", "admin"))
    p.add_argument("--out", required=True, help="output folder the account belongs to")
    p.set_defaults(func=cmd_users_add)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Notes such as LegacyCheckpointWarning as one stderr line, like the errors (no source excerpt)."""
    print(f"evchain: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        return args.func(args)
    except InputError as err:
        print(f"evchain: error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
