"""Answer new inputs with a trained memory, from a run's checkpoint.

    python -m neurocl.infer checkpoint=outputs/runs/<run> input=shoe.png
    python -m neurocl.infer checkpoint=outputs/runs/<run> input=images/ output=predictions.jsonl
    python -m neurocl.infer checkpoint=outputs/runs/<run> input=reports.txt     # one text per line
    python -m neurocl.infer checkpoint=outputs/runs/<run> input="no acute cardiopulmonary abnormality"

Each answer carries its label, confidence, top-3 labels, whether the memory abstained, and its evidence: the
training samples (by source id) behind it. `output=<file>.jsonl` also writes <file>.csv beside it (and
`output=<file>.csv` <file>.jsonl). A run that stopped before the end of its stream answers only with
`allow_partial=true`: its memory has not seen every experience.
"""

import csv
import json
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from neurocl import checkpoint, run_dir
from neurocl.composer import Composer
from neurocl.data.base import Split
from neurocl.data.images import read_image
from neurocl.encoders import check_accepts
from neurocl.errors import ConfigError, DataError, NeuroclError
from neurocl.io import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
TEXT_SUFFIXES = {".txt"}
OPTIONS = {"checkpoint": None, "input": None, "output": None, "batch_size": 256, "top_k": 3, "allow_partial": False}
OUTPUT_SUFFIXES = (".jsonl", ".csv")


def read_inputs(spec: str, modality: str, image_shape) -> tuple[list[str], object]:
    """(source ids, samples) of an image, a folder of images, a .txt file of texts (one per line) or a text."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | TEXT_SUFFIXES)
        if not files:
            raise DataError(f"{path} holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}) or .txt file. "
                            "Fix: point input= at a folder of inputs, one file, or a text.")
    elif path.is_file():
        files = [path]
    elif modality == "text":
        return ["input"], [spec]
    else:
        raise DataError(f"input {spec} is not a file or folder. Fix: give an image file or a folder of images.")
    ids, samples = [], []
    for file in files:
        suffix = file.suffix.lower()
        if suffix in TEXT_SUFFIXES and modality == "text":
            try:
                lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
            except UnicodeDecodeError as e:
                raise DataError(f"{file} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}). Fix: "
                                f"convert it, e.g. iconv -f latin1 -t utf-8 {file} > {file.stem}.utf8.txt") from None
            ids += [f"{file}:{n}" for n, line in enumerate(lines, 1) if line]
            samples += [line for line in lines if line]
        elif suffix in IMAGE_SUFFIXES and modality in ("image", "page"):
            channels, size = image_shape[0], image_shape[1]
            ids.append(str(file))
            samples.append(read_image(file, channels=channels, size=size))
        else:
            raise DataError(f"{file}: a {suffix or 'suffix-less'} file cannot be answered by a memory trained on "
                            f"{modality} samples. Fix: give {'.txt files or a text' if modality == 'text' else 'image files'}.")
    if not samples:
        raise DataError(f"{spec} holds no input. Fix: give a non-empty file.")
    return ids, torch.stack(samples) if modality != "text" else samples


def _made_without_checkpoints(run: Path) -> bool:
    try:
        return json.loads((run / "results.json").read_text())["config"]["checkpoint"] is False
    except (OSError, ValueError, KeyError, TypeError):  # no results, or unreadable ones: nothing to say
        return False


def load_trained(path: Path, allow_partial: bool = False):
    """(config, data description, encoder, memory) of a run directory or checkpoint file; the description says
    how many experiences the memory has learned ("experiences_seen": [seen, of]). A run that stopped
    before the end of its stream is refused unless `allow_partial`: its answers would come from part of it."""
    run = path if path.is_dir() else path.parent
    path = path / checkpoint.FILENAME if path.is_dir() else path
    if not path.exists() and _made_without_checkpoints(run):
        raise DataError(f"{run} was run with checkpoint=false, so it kept no memory to answer with. "
                        "Fix: rerun it with checkpoint=true (the default).")
    saved = checkpoint.load(path, missing_fix="point checkpoint= at a run directory that holds checkpoint.pt "
                                              "(runs write it after each experience unless checkpoint=false)")
    seen, total = saved["progress"]["done"], len(saved["progress"]["R"])
    if seen < total and not allow_partial:
        overrides = run / run_dir.CONFIG_DIR / "overrides.yaml"
        hint = run_dir.resume_hint(run, list(OmegaConf.load(overrides)) if overrides.exists() else [])
        raise DataError(f"{run} stopped after {seen} of its {total} experiences (killed, or still running): its "
                        f"memory has not learned the rest. Fix: {hint}; or answer with it as it is: allow_partial=true.")
    if "data" not in saved:
        raise DataError(f"{path} predates inference support (no class names in it). Fix: rerun the run.")
    config, data = OmegaConf.create(saved["config"]), {**saved["data"], "experiences_seen": [seen, total]}
    if config.get("projection"):
        raise ConfigError("checkpoint", str(path), "its run trained a projection head, which checkpoints do not "
                          "hold yet", "infer from a run with projection=none")
    encoder = instantiate(config.encoder)
    memory = instantiate(config.memory, dim=encoder.dim, num_classes=len(data["class_names"]))
    memory.load_state_dict(saved["memory"])
    return config, data, encoder, memory


def answer(encoder, memory, data: dict, ids: list[str], samples, batch_size: int, top_k: int) -> list[dict]:
    """The composer's answers (the memory's own abstention), with class names and source ids for people."""
    names = data["class_names"]
    composer = Composer(top_k=top_k)
    split = Split(samples, torch.zeros(len(ids), dtype=torch.long), ids=ids, modality=data["modality"])
    answers = []
    with tqdm(total=len(split), desc="answering", unit="input", disable=True if len(split) < batch_size else None) as progress:
        for start, batch in split.batches(batch_size):
            with torch.no_grad():
                prediction = memory.predict(encoder.encode(batch).float().cpu())
            for i, a in enumerate(composer.compose(memory, prediction, data["train_ids"])):
                answers.append({"input": ids[start + i], "label": None if a.label is None else names[a.label],
                                "confidence": a.confidence, "abstained": a.abstained, "reason": a.reason,
                                "top": [names[c] for c in a.top_k], "evidence": list(a.evidence.sources)})
            progress.update(len(prediction.labels))
    return answers


def check_output(output: Path):
    """Before any answer is computed: a file path of a format we write, in a folder that can hold it."""
    if output.is_dir():
        raise ConfigError("output", str(output), "is a directory", f"set output={output / 'predictions.jsonl'}")
    if output.suffix not in OUTPUT_SUFFIXES:
        raise ConfigError("output", str(output), "names neither a .jsonl nor a .csv file (the other is written "
                          "beside it)", f"set output={output.with_suffix('.jsonl')}")
    if output.parent.exists() and not output.parent.is_dir():
        raise ConfigError("output", str(output), f"{output.parent} is a file, not a folder",
                          "write into a folder: output=<folder>/predictions.jsonl")


def write_answers(answers: list[dict], output: Path) -> list[Path]:
    """JSONL and CSV, one at `output` and the other beside it with the other suffix; both atomically."""
    jsonl, table = output.with_suffix(".jsonl"), output.with_suffix(".csv")
    with atomic_path(jsonl) as tmp:
        tmp.write_text("".join(json.dumps(a) + "\n" for a in answers))
    with atomic_path(table) as tmp:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(answers[0]))
            writer.writeheader()
            writer.writerows({**a, "top": "|".join(a["top"]), "evidence": "|".join(a["evidence"])} for a in answers)
    return [jsonl, table]


def main(argv: list[str]) -> list[dict]:
    options = OmegaConf.merge(OmegaConf.create(OPTIONS), OmegaConf.from_cli(argv))
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ConfigError(sorted(unknown)[0], options[sorted(unknown)[0]], "is not an option of neurocl.infer",
                          f"use {', '.join(OPTIONS)}")
    for key in ("checkpoint", "input"):
        if options[key] is None:
            raise ConfigError(key, None, "is required", f"python -m neurocl.infer checkpoint=<run dir> input=<file, folder or text>")
    for key in ("batch_size", "top_k"):
        if not isinstance(options[key], int) or options[key] < 1:
            raise ConfigError(key, options[key], "must be a positive integer", f"leave {key} at {OPTIONS[key]}")
    if not isinstance(options.allow_partial, bool):
        raise ConfigError("allow_partial", options.allow_partial, "must be true or false", "set allow_partial=true")
    if options.output:
        check_output(Path(options.output))
    config, data, encoder, memory = load_trained(Path(options.checkpoint), options.allow_partial)
    seen, total = data["experiences_seen"]
    print(f"{options.checkpoint}: the memory has learned {seen} of {total} experiences", file=sys.stderr)
    check_accepts(encoder, data["modality"], "the input")
    ids, samples = read_inputs(str(options.input), data["modality"], data["image_shape"])
    answers = answer(encoder, memory, data, ids, samples, options.batch_size, options.top_k)
    for a in answers:
        said = f"abstained ({a['reason']})" if a["abstained"] else f"{a['label']} ({a['confidence']:.2f})"
        print(f"{a['input']}: {said}  top: {', '.join(a['top'])}  evidence: {', '.join(a['evidence']) or '-'}")
    if options.output:
        print("wrote " + " and ".join(map(str, write_answers(answers, Path(options.output)))))
    return answers


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except NeuroclError as e:
        sys.exit(f"error: {e}")
