"""XNLI from the hub (``xnli.data: hub``), end to end over loopback HTTP: the real ``datasets`` and
``huggingface_hub`` clients against a small Hub-compatible server holding an XNLI-format dataset
repo of parquet files at one commit, with its LFS files behind a second (CDN) server, as on the
Hub. Both clients read HF_ENDPOINT when imported, so every load runs in a fresh process."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pytest
from loopback import serve

from mlm_dynamics import xnli
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.analysis.tables import COLUMNS
from mlm_dynamics.config_check import schema_default

REPO = Path(__file__).resolve().parents[1]
HUB_LANGUAGES = ("en", "fr")
ROWS = {"train": 300, "validation": 120, "test": 120}
WORDS = {
    "en": "man woman child dog cat runs sleeps eats park house street car".split(),
    "fr": "homme femme enfant chien chat court dort mange parc maison rue voiture".split(),
}
NEGATION = {"en": "not", "fr": "pas"}

Response = tuple[int, dict[str, str], bytes]


# ---------------------------------------------------------------- the dataset repo


def xnli_rows(lang: str, split: str, n: int):
    """Synthetic pairs, the same rows (translated word for word) in every language: entailment
    keeps three premise words, neutral adds a word, contradiction adds a negation."""
    import pyarrow as pa

    rng = np.random.default_rng(list(ROWS).index(split))
    words = WORDS[lang]
    premises, hypotheses, labels = [], [], []
    for i in range(n):
        chosen = [words[j] for j in rng.choice(len(words), 5, replace=False)]
        label = i % 3
        extra = [[], [words[rng.integers(len(words))]], [NEGATION[lang]]][label]
        premises.append(" ".join(chosen).capitalize() + ".")
        hypotheses.append(" ".join(chosen[:3] + extra).capitalize() + ".")
        labels.append(label)
    return pa.table({"premise": premises, "hypothesis": hypotheses,
                     "label": pa.array(labels, pa.int64())})  # fmt: skip


def readme(languages) -> bytes:
    """A dataset card laid out as facebook/xnli's: dataset_info and configs per language."""
    lines = ["---", "language:", *(f"- {lang}" for lang in languages), "dataset_info:"]
    for lang in languages:
        lines += [f"- config_name: {lang}", "  features:"]
        lines += ["  - name: premise", "    dtype: string", "  - name: hypothesis"]
        lines += ["    dtype: string", "  - name: label", "    dtype:", "      class_label:"]
        lines += ["        names:", "          '0': entailment", "          '1': neutral"]
        lines += ["          '2': contradiction", "  splits:"]
        for split, n in ROWS.items():
            lines += [f"  - name: {split}", f"    num_bytes: {60 * n}", f"    num_examples: {n}"]
    lines.append("configs:")
    for lang in languages:
        lines += [f"- config_name: {lang}", "  data_files:"]
        for split in ROWS:
            lines += [f"  - split: {split}", f"    path: {lang}/{split}-*"]
    lines += ["---", "", "# XNLI-format pairs for tests", ""]
    return "\n".join(lines).encode()


def xnli_repo_files(languages=HUB_LANGUAGES) -> dict[str, bytes]:
    import pyarrow.parquet as pq

    files = {
        ".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": readme(languages),
    }
    for lang in languages:
        for split, n in ROWS.items():
            buffer = io.BytesIO()
            pq.write_table(xnli_rows(lang, split, n), buffer)
            files[f"{lang}/{split}-00000-of-00001.parquet"] = buffer.getvalue()
    return files


# ---------------------------------------------------------------- the hub


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}"
        f"\nsize {len(data)}\n"
    ).encode()


class FakeDatasetHub:
    """What ``datasets.load_dataset(repo, config, split=..., revision=COMMIT)`` of a repo of data
    files calls (datasets 5.2, huggingface_hub 2.4), at exactly one commit:

    - ``GET /api/datasets/{repo}/revision/{rev}``: the repo info (``sha``: the commit);
    - ``HEAD|GET /datasets/{repo}/resolve/{rev}/{path}``: a file, with ``X-Repo-Commit`` and
      ``ETag`` (the git blob id); an LFS file (``*.parquet``) answers 302 to the CDN, with its
      sha256 in ``X-Linked-Etag`` and its size in ``X-Linked-Size``, as the Hub does;
    - ``GET /api/datasets/{repo}/tree/{rev}[/{path}]?recursive=&expand=``: a folder listing;
    - ``GET /api/agent-harnesses``: huggingface_hub's registry for its user-agent (empty here).

    ``rev`` must be the commit: any other revision answers 404 ``RevisionNotFound``. Every
    request is recorded in ``requests``, those to the CDN app (``cdn``) in ``cdn_requests``.
    """

    def __init__(self, repo: str, files: dict[str, bytes]):
        self.repo = repo
        self.files = dict(sorted(files.items()))
        self.lfs = {path for path in self.files if path.endswith(".parquet")}
        listing = {path: hashlib.sha256(data).hexdigest() for path, data in self.files.items()}
        self.commit = hashlib.sha1(json.dumps(listing).encode()).hexdigest()
        self.cdn_url = ""  # the CDN server's base URL, set once it runs
        self.requests: list[tuple[str, str]] = []
        self.cdn_requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    @staticmethod
    def _json(obj) -> Response:
        return 200, {"Content-Type": "application/json"}, json.dumps(obj).encode()

    @staticmethod
    def _error(code: str, message: str) -> Response:
        headers = {"Content-Type": "application/json", "X-Error-Code": code}
        return 404, {**headers, "X-Error-Message": message}, json.dumps({"error": message}).encode()

    def _entry(self, path: str) -> dict:
        if path not in self.files:
            tree = hashlib.sha1(f"tree {path}".encode()).hexdigest()
            return {"type": "directory", "oid": tree, "size": 0, "path": path}
        data = self.files[path]
        stored = lfs_pointer(data) if path in self.lfs else data
        entry = {"type": "file", "oid": git_blob_id(stored), "size": len(data), "path": path}
        if path in self.lfs:
            sha256 = hashlib.sha256(data).hexdigest()
            entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": len(stored)}
        return entry

    def _listing(self, folder: str, recursive: bool) -> list[dict] | None:
        prefix = f"{folder}/" if folder else ""
        entries: dict[str, dict] = {}
        for name in self.files:
            if name.startswith(prefix):
                parts = name[len(prefix) :].split("/")
                for depth in range(1, len(parts) + 1 if recursive else 2):
                    path = prefix + "/".join(parts[:depth])
                    entries.setdefault(path, self._entry(path))
        return list(entries.values()) if entries else None

    def __call__(self, method: str, path: str, headers: dict) -> Response:
        with self._lock:
            self.requests.append((method, path))
        url = urlsplit(path)
        parts = [unquote(part) for part in url.path.strip("/").split("/")]
        owner, name = self.repo.split("/")
        if parts == ["api", "agent-harnesses"]:
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if parts[:4] == ["api", "datasets", owner, name] and len(parts) >= 6 and method == "GET":
            kind, revision, in_repo = parts[4], parts[5], "/".join(parts[6:])
            if revision != self.commit:
                return self._error("RevisionNotFound", f"Invalid rev id: {revision}")
            if kind == "revision" and not in_repo:
                siblings = [{"rfilename": path} for path in self.files]
                return self._json(
                    {"id": self.repo, "sha": self.commit, "private": False, "siblings": siblings}
                )
            if kind == "tree":
                recursive = "recursive=true" in url.query.lower()
                listing = self._listing(in_repo, recursive)
                if listing is None:
                    return self._error("EntryNotFound", f"{in_repo} does not exist")
                return self._json(listing)
        if parts[:4] == ["datasets", owner, name, "resolve"] and len(parts) >= 6:
            revision, in_repo = parts[4], "/".join(parts[5:])
            if revision != self.commit:
                return self._error("RevisionNotFound", f"Invalid rev id: {revision}")
            data = self.files.get(in_repo)
            if data is None:
                return self._error("EntryNotFound", f"{in_repo} does not exist")
            if in_repo in self.lfs:
                sha256 = hashlib.sha256(data).hexdigest()
                return 302, {
                    "X-Repo-Commit": self.commit, "Location": f"{self.cdn_url}/lfs/{sha256}",
                    "ETag": f'"{git_blob_id(lfs_pointer(data))}"', "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(len(data)),
                }, b""  # fmt: skip
            return 200, {"X-Repo-Commit": self.commit, "ETag": f'"{git_blob_id(data)}"'}, data
        return self._error("RepoNotFound", f"no route {method} {url.path}")

    def cdn(self, method: str, path: str, headers: dict) -> Response:
        """The CDN: ``GET /lfs/{sha256}`` -> the LFS file."""
        with self._lock:
            self.cdn_requests.append((method, path))
        blobs = {hashlib.sha256(self.files[p]).hexdigest(): self.files[p] for p in self.lfs}
        data = blobs.get(urlsplit(path).path.rsplit("/", 1)[-1])
        if data is None:
            return 404, {}, b"not found"
        return 200, {"Content-Type": "application/octet-stream"}, data

    def routes(self) -> set[tuple[str, str]]:
        """The requests so far, the commit and the data file names written as placeholders."""
        names = {path: f"<{path.split('/')[0]}>/{{split}}" for path in self.lfs}
        routes = set()
        for method, path in self.requests:
            route = urlsplit(path).path.replace(self.commit, "{commit}")
            for file, placeholder in names.items():
                route = route.replace(file, placeholder)
            routes.add((method, route))
        return routes


@pytest.fixture(scope="module")
def hub():
    hub = FakeDatasetHub("facebook/xnli", xnli_repo_files())
    with serve(hub.cdn, lifetime=900) as cdn, serve(hub, lifetime=900) as url:
        hub.cdn_url = cdn
        hub.url = url
        yield hub


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def hub_env(tmp: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """HF_ENDPOINT at the fake hub; every cache, and HOME, under ``tmp``; not offline."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.pop("TRANSFORMERS_OFFLINE", None)
    return {
        **env, "PYTHONPATH": str(REPO), "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp / "hf"),
        "HOME": str(tmp / "home"), "XDG_CACHE_HOME": str(tmp / "home" / ".cache"),
        "HF_HUB_OFFLINE": "0", **extra,
    }  # fmt: skip


def features_cli(checkpoint: Path, out: Path, env: dict, *languages: str, revision: str):
    """``python -m mlm_dynamics xnli-features`` for each language, in one fresh process."""
    runs = [
        ["xnli-features", "--checkpoint", str(checkpoint), "--data", "hub", "--language", lang,
         "--hub-revision", revision, "--max-train", "60", "--max-dev", "30", "--max-test", "30",
         "--batch-tokens", "2048", "--pooling", "auto", "--threads", "1", "--out", str(out / lang)]
        for lang in languages
    ]  # fmt: skip
    script = (
        "import sys; from mlm_dynamics.__main__ import main\n"
        f"sys.exit(max(main(run) for run in {runs!r}))"
    )
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def hub_features(hub, tiny_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xnli_hub")
    (tmp / "home").mkdir()
    env = hub_env(tmp, hub.url)
    done = features_cli(tiny_checkpoint, tmp / "features", env, *HUB_LANGUAGES, revision=hub.commit)
    assert done.returncode == 0, done.stderr[-5000:]
    return tmp, env


def test_features_load_the_pinned_commit_and_record_it(hub, hub_features):
    tmp, _ = hub_features
    served = hub.files
    for lang in HUB_LANGUAGES:
        source = json.loads((tmp / "features" / lang / xnli.SOURCE_FILE).read_text())
        assert (source["language"], source["data"]) == (lang, "hub")
        for split, hub_split in xnli.HUB_SPLITS.items():
            record = source["splits"][split]
            name = f"{lang}/{hub_split}-00000-of-00001.parquet"
            assert record == {
                "repo": "facebook/xnli", "revision": hub.commit, "commit": hub.commit,
                "config": lang, "split": hub_split,
                "files": {name: hashlib.sha256(served[name]).hexdigest()},
                "pairs": ROWS[hub_split], "used": {"train": 60, "dev": 30, "test": 30}[split],
            }  # fmt: skip
            labels = np.load(tmp / "features" / lang / split / xnli.LABELS_FILE)
            assert labels.shape == (record["used"],) and set(labels) <= {0, 1, 2}
        uv = np.load(tmp / "features" / lang / "train" / "layer02.npy")
        assert uv.shape == (60, 2, 32) and np.isfinite(uv).all()
    # The same subsampled rows in both languages (the repo's rows are translations).
    dev = [np.load(tmp / "features" / lang / "dev" / xnli.LABELS_FILE) for lang in HUB_LANGUAGES]
    assert (dev[0] == dev[1]).all()

    # Exactly this protocol, every request at the pinned commit; the data from the CDN.
    assert hub.routes() == {
        ("GET", "/api/agent-harnesses"),
        ("GET", "/api/datasets/facebook/xnli/revision/{commit}"),
        ("HEAD", "/datasets/facebook/xnli/resolve/{commit}/README.md"),
        ("GET", "/datasets/facebook/xnli/resolve/{commit}/README.md"),
        ("HEAD", "/datasets/facebook/xnli/resolve/{commit}/xnli.py"),  # 404: no script
        ("HEAD", "/datasets/facebook/xnli/resolve/{commit}/.huggingface.yaml"),  # 404
        ("HEAD", "/datasets/facebook/xnli/resolve/{commit}/dataset_infos.json"),  # 404
        ("GET", "/api/datasets/facebook/xnli/tree/{commit}"),
        ("GET", "/api/datasets/facebook/xnli/tree/{commit}/en"),
        ("GET", "/api/datasets/facebook/xnli/tree/{commit}/fr"),
        *(("HEAD", f"/datasets/facebook/xnli/resolve/{{commit}}/<{lang}>/{{split}}")
          for lang in HUB_LANGUAGES),
    }  # fmt: skip
    lfs = {f"/lfs/{hashlib.sha256(served[path]).hexdigest()}" for path in hub.lfs}
    assert sorted(hub.cdn_requests) == sorted(("GET", path) for path in lfs)  # each file once

    # The caches are under the test's HF_HOME; nothing went to the home directory.
    hf = tmp / "hf"
    assert any((hf / "hub" / "datasets--facebook--xnli" / "blobs").iterdir())
    assert (hf / "datasets" / "facebook___xnli" / "fr" / "0.0.0" / hub.commit).is_dir()
    assert not any((tmp / "home").rglob("*huggingface*"))


def test_probe_scores_record_every_languages_source(hub, hub_features, tmp_path):
    tmp, _ = hub_features
    out = tmp_path / "fr.parquet"
    argv = ["xnli-probe", "--features", *(str(tmp / "features" / lang) for lang in HUB_LANGUAGES)]
    argv += ["--train-language", "fr", "--model", "tiny", "--step", "0", "--seeds", "1"]
    argv += ["--l2", "1e-3", "--backend", schema_default("probing.backend"), "--max-iter", "50"]
    argv += ["--resamples", "100", "--confidence", "0.95", "--bootstrap-seed", "1"]
    argv += ["--min-sentences", "10"]
    assert cli([*argv, "--out", str(out), "--items", str(out.with_suffix(".items.npz"))]) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == list(COLUMNS) and len(table) == 3 * (3 + 1)
    assert np.isfinite(table.value).all()
    sources = table.attrs["xnli_data"]
    assert set(sources) == set(HUB_LANGUAGES)
    for lang in HUB_LANGUAGES:
        test = sources[lang]["splits"]["test"]
        assert (test["repo"], test["revision"], test["commit"]) == (
            "facebook/xnli",
            hub.commit,
            hub.commit,
        )
        name = f"{lang}/test-00000-of-00001.parquet"
        assert test["files"] == {name: hashlib.sha256(hub.files[name]).hexdigest()}


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_missing_revision_unreachable_hub_and_missing_language_are_one_line(
    hub, hub_features, tmp_path
):
    tmp, env = hub_features
    checkpoint = tmp / "no-checkpoint-needed"  # the data is read first
    before = len(hub.requests)
    other = "0" * 40
    line = one_error_line(features_cli(checkpoint, tmp_path, env, "en", revision=other))
    assert line == (
        f"error: xnli.hub_revision: facebook/xnli@{other} en: facebook/xnli has no revision "
        f"'{other}'"
    )
    asked = {urlsplit(path).path for _, path in hub.requests[before:]}
    # (huggingface_hub caches its agent registry in HF_HOME for a day: asked for at most once)
    assert asked - {"/api/agent-harnesses"} == {f"/api/datasets/facebook/xnli/revision/{other}"}

    line = one_error_line(features_cli(checkpoint, tmp_path, env, "de", revision=hub.commit))
    assert line.startswith(f"error: xnli.languages: facebook/xnli@{hub.commit} de: ")
    assert "'de' not found" in line and "['en', 'fr']" in line

    unreachable = {**env, "HF_ENDPOINT": closed_port_url()}
    line = one_error_line(features_cli(checkpoint, tmp_path, unreachable, "fr", revision="v1"))
    endpoint = unreachable["HF_ENDPOINT"]
    assert line.startswith(
        f"error: xnli.data: facebook/xnli@v1 fr: cannot reach the hub at {endpoint}"
    )
    assert not any(tmp_path.iterdir())  # no features directory left behind


def test_offline_the_cache_answers_for_the_pinned_commit_only(hub, hub_features, tmp_path):
    tmp, env = hub_features
    offline = {**env, "HF_ENDPOINT": closed_port_url(), "HF_HUB_OFFLINE": "1"}
    script = (
        "import json; from mlm_dynamics import xnli\n"
        f"pairs = xnli.load_pairs('hub', 'fr', 'test', {hub.commit!r})\n"
        "print(json.dumps([len(pairs), pairs.source]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=offline, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    n, source = json.loads(done.stdout)
    assert n == ROWS["test"] and source["commit"] == hub.commit
    name = "fr/test-00000-of-00001.parquet"
    assert source["files"] in ({}, {name: hashlib.sha256(hub.files[name]).hexdigest()})

    other = "1" * 40  # not what the cache holds: datasets would quietly use the cached commit
    line = one_error_line(features_cli(tmp / "none", tmp_path, offline, "fr", revision=other))
    assert line == (
        f"error: xnli.hub_revision: facebook/xnli@{other} fr: offline (HF_HUB_OFFLINE), and the "
        f"datasets cache ({tmp / 'hf' / 'datasets'}) holds no fr prepared from {other}"
    )
    line = one_error_line(features_cli(tmp / "none", tmp_path, offline, "fr", revision="main"))
    assert "offline (HF_HUB_OFFLINE)" in line and "full 40-hex commit sha" in line


@pytest.mark.e2e
def test_workflow_runs_xnli_from_the_hub(hub, tiny_checkpoint, tmp_path):
    """``xnli: {data: hub, hub_revision: COMMIT}`` through the DAG: features, probes and the
    tidy table, every request at the pinned commit."""
    (tmp_path / "home").mkdir()
    config = {
        "models": {"tiny": {"source": "local", "layers": 2, "steps": [0],
                            "path": str(tiny_checkpoint)}},
        "languages": {"en": {"heldout_text": str(REPO / "resources/heldout/en.txt.gz")}},
        "bpc": {"enabled": False},
        "xnli": {"enabled": True, "languages": list(HUB_LANGUAGES), "data": "hub",
                 "hub_revision": hub.commit, "max_train": 60, "max_dev": 30, "max_test": 30},
        "probing": {"max_iter": 50, "seeds": 1},
        "gpu_resources": {"base_mem_mb": 256, "mem_mb_per_million_parameters": 1},
        "statistics": {"resamples": 100, "min_sentences": 10},
    }  # fmt: skip
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    scores = [f"results/xnli/scores/tiny/0/{lang}.parquet" for lang in HUB_LANGUAGES]
    targets = [*scores, "results/tables/probing.parquet"]
    command = [sys.executable, "-m", "snakemake", *targets, "--cores", "2"]
    command += ["--directory", str(tmp_path / "run"), "--snakefile", str(REPO / "Snakefile")]
    command += ["--configfile", str(config_file)]
    before = len(hub.requests)
    done = subprocess.run(
        command, capture_output=True, text=True, env=hub_env(tmp_path, hub.url), timeout=300
    )
    assert done.returncode == 0, done.stderr[-5000:]

    run = tmp_path / "run"
    for lang, path in zip(HUB_LANGUAGES, scores, strict=True):
        table = pd.read_parquet(run / path)
        accuracy = table[table.metric == "accuracy"]
        # (2 test languages + own dev) x 3 hidden states
        assert len(accuracy) == 3 * 3 and set(accuracy.train_lang) == {lang}
        assert np.isfinite(accuracy.value).all()
        for source in table.attrs["xnli_data"].values():
            for record in source["splits"].values():
                assert (record["revision"], record["commit"]) == (hub.commit, hub.commit)
                assert all(
                    digest == hashlib.sha256(hub.files[name]).hexdigest()
                    for name, digest in record["files"].items()
                )
    tidy = pd.read_parquet(run / "results/tables/probing.parquet")
    assert set(tidy.task) == {"xnli"} and len(tidy) == 2 * 3 * (3 + 1)
    asked = [path for _, path in hub.requests[before:] if "/facebook/xnli/" in path]
    assert asked and all(f"/{hub.commit}" in path for path in asked)
    assert not any((tmp_path / "home").rglob("*huggingface*"))
