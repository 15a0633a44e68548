"""The README is executed, and the command examples of the docs name real commands.

- :func:`test_readme_tour_after_a_short_demo` (integration, slow): a short ``make demo``
  (10 machines x 240 steps, the session's model), then every command of the README's tour
  (the ``sh`` blocks from "A five-minute tour" up to "Configuration"), in order, in a
  scratch directory, with the test services' settings and nothing else. Each must exit as
  the README says (0, or 2 where it says "exit status 2") and print the key lines of
  :data:`STEPS`; a few run smaller (``scaled``), ``plantwatch run`` gets Ctrl-C once it
  printed a status line, and ``services down`` is only checked with ``--help`` (it would
  stop the suite's services). A README command with no step is run and must exit 0; a
  step that matches no README command fails the test (keep them in step).
- :func:`test_doc_commands_name_real_commands_and_options`: every ``plantwatch ...`` line
  in a code block of README.md and docs/*.md names a real subcommand and real options.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from plantwatch.settings import Settings

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
DEMO_ENV = {"DEMO_MACHINES": "10", "DEMO_STEPS": "240", "DEMO_RATE": "600"}
RUN = r"demo-\d{8}-\d{6}"  # a demo run's name (and its topics' prefix, its bucket)


def _ids_count_from_one(output: str) -> None:
    """`tickets list`: ids are 1..N, newest first (no gaps)."""
    ids = [int(m.group(1)) for m in re.finditer(r"^ +(\d+)  \w+ ", output, re.M)]
    assert ids, "no tickets listed"
    assert sorted(ids) == list(range(1, len(ids) + 1)), f"ticket ids with gaps: {ids}"


@dataclass(frozen=True)
class Step:
    """What one README command must do when it runs.

    Attributes:
        command: regex that the whole command (without its comment) matches.
        prints: regexes that must each match a line of the output (stdout + stderr).
        status: its exit status.
        files: files it must leave in the working directory.
        scaled: ``(README text, smaller text)`` pairs replaced before it runs.
        until: runs until each of these matched a line, then gets Ctrl-C (SIGINT).
        help_only: why it is not run: only ``--help`` (the command and options exist).
        check: a further check of the output.
    """

    command: str
    prints: tuple[str, ...] = ()
    status: int = 0
    files: tuple[str, ...] = ()
    scaled: tuple[tuple[str, str], ...] = ()
    until: tuple[str, ...] = ()
    help_only: str | None = None
    check: Callable[[str], None] | None = None


STEPS = [
    Step(r"make demo", (r"^\[demo\] done in \d+ s\. The tour's commands now show this run",)),
    Step(r"source \.venv/bin/activate"),
    Step(
        r"plantwatch services status",
        (r"^kafka +running", r"^influxdb +running", rf"^profile +{RUN} "),
    ),
    Step(
        r"plantwatch smoke",
        (r"^kafka +ok +produced and read back", rf"^influxdb +ok .* in bucket '{RUN}'"),
    ),
    Step(r"plantwatch --help", (r"^  -v, --verbose", r"PLANTWATCH_INFLUX_URL", r"^Commands:")),
    Step(
        r"PLANTWATCH_INFLUX_TOKEN=wrong plantwatch smoke",
        (r"\Aplantwatch: error: invalid setting PLANTWATCH_INFLUX_TOKEN='\*\*\*': [^\n]+\n\Z",),
        status=2,
    ),
    Step(
        r"plantwatch run --status-every 10",
        (r"^status: ingest lag \d+", r"^run: SIGINT: stopping every stage", r"^run: done \("),
        until=(r"^status: ", r"ingest: assigned", r"score: assigned", r"alert: assigned"),
    ),
    Step(
        r"plantwatch report --since 12h --png run\.png",
        (r"^records ingested +[\d,]+", r"^tickets opened +[1-9]", r"^failures \(truth\) +\d+"),
        files=("run.png",),
    ),
    Step(
        r"plantwatch dead-letters --since 12h",
        (rf"^dead letters since 12h: [1-9][\d,]* in {RUN}\.telemetry\.dlq", r"^newest \d+"),
    ),
    Step(
        r"plantwatch dead-letters --reason unknown_model_version --redrive",
        (r"^redriven: 0 letters",),
    ),
    Step(
        r"plantwatch status",
        (
            rf"^machines \(10; risk since 1d; open tickets from store .*/{RUN}/alerts\.db\)",
            r"^  levels \(PLANTWATCH_ALERT_\*\): WARNING at risk >= 0\.5 \(OK below 0\.4\), "
            r"CRITICAL at >= 0\.6",
            r"^  pump-0000 +\d\.\d{3} +(OK|WARNING|CRITICAL) ",
            r"^  model threshold 0\.\d{3} \(model m-\w+'s own, chosen on its validation windows; "
            r"it sets no level\)",
            rf"^  ingest +{RUN}-ingest ",
            r"^dead letters since 1d",
        ),
    ),
    Step(r"plantwatch tickets list", (r"^ +1  open ",), check=_ids_count_from_one),
    Step(
        r"plantwatch tickets show 1",
        (r"^ticket: +1$", r"^level: +CRITICAL$", rf'^history \(Flux\): +from\(bucket: "{RUN}"\)'),
    ),
    Step(
        r"plantwatch history pump-0000 --since 2d --csv pump-0000\.csv --plot pump-0000\.png",
        (
            r"^equipment pump-0000: \d+ rows",
            r"^bearing_temp +\d+ ",
            r"^risk: \d+ predictions; latest \d\.\d{3} \(level (OK|WARNING|CRITICAL)\)",
            r"^  levels \(PLANTWATCH_ALERT_\*\): WARNING at risk >= ",
            r"^  model threshold 0\.\d{3} \(the model's own",
            r"^alerts: \d+",
            r"^tickets: \d+",
        ),
        files=("pump-0000.csv", "pump-0000.png"),
    ),
    Step(r'sim="[^"]*"'),
    *(
        Step(
            rf"plantwatch simulate --history-out {fleet}/telemetry\.parquet --machines 30 "
            rf"--steps 1200 --seed \d+ \$sim",
            (rf"^simulate: wrote \d+ samples of 8 machines to {fleet}/telemetry\.parquet",),
            scaled=(("--machines 30 --steps 1200", "--machines 8 --steps 400"),),
        )
        for fleet in ("fleet", "fleet2")
    ),
    Step(
        r"plantwatch train --data history:fleet/telemetry\.parquet --horizon 30 --epochs 15 "
        r"--out models/plant",
        (r"^wrote models/plant",),
        scaled=(("--epochs 15", "--epochs 1"),),
    ),
    Step(
        r"plantwatch evaluate --model models/plant --data history:fleet2/telemetry\.parquet "
        r"--lost-readings 0\.01",
        (r"^evaluation: n=\d+ .* f1=", r"^tickets \(alert rules replayed\): \d+ opened"),
    ),
    Step(
        r"plantwatch evaluate --model models/plant --data history:fleet2/telemetry\.parquet "
        r"--levels 0\.5,0\.6,0\.7,0\.8",
        (r"^  level 0\.50 \(reset 0\.40\): ", r"^  level 0\.80 ", r"<- best ticket F1 here"),
    ),
    Step(
        r"source \.venv/bin/activate && plantwatch services up",
        (r"^kafka +already running", r"^influxdb +already running"),
    ),
    Step(
        r"plantwatch simulate --machines 50 --count 20000 --duplicate 0\.01 --malformed 0\.01",
        (rf"^simulate: 20000 messages \(.* to '{RUN}\.telemetry'",),
    ),
    Step(
        r"plantwatch replay cmapss \.\./shared/data/cmapss/train_FD001\.txt --engines 1-5",
        (rf"^replayed 5 engines: \d+ cycles in \d+ messages to {RUN}\.telemetry",),
    ),
    Step(
        r"plantwatch ingest --idle-exit 10 --tap valid\.jsonl",
        (r"^consumed \d+ records: [1-9]\d* valid samples, \d+ duplicates, [1-9]\d* dead letters",),
        files=("valid.jsonl",),
    ),
    Step(
        r"plantwatch score --idle-exit 10",
        (r"^scored \d+ feature records: [1-9]\d* predictions",),
    ),
    Step(
        r"plantwatch alert --sink builtin,kafka --idle-exit 10",
        (r"^consumed [1-9]\d* predictions: \d+ points",),
    ),
    Step(r"plantwatch services down", help_only="it would stop the test suite's services"),
]


def code_blocks(text: str, languages: tuple[str, ...] = ("sh", "bash", "")) -> list[str]:
    """The bodies of the fenced code blocks in these languages, in order."""
    return [m.group(2) for m in FENCE.finditer(text) if m.group(1) in languages]


def strip_comment(line: str) -> str:
    """``line`` without its shell comment (a ``#`` outside quotes that starts a word)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands_of(body: str) -> list[str]:
    """A block's commands: continuations joined, comments, prompts and blank lines dropped."""
    out: list[str] = []
    pending = ""
    for raw in body.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = strip_comment(line.removeprefix("$ "))
        if line:
            out.append(line)
    return out


def tour_commands() -> list[str]:
    """The commands of the README's tour, in order."""
    text = README.read_text()
    start, end = text.index("\n## A five-minute tour"), text.index("\n## Configuration")
    return [c for body in code_blocks(text[start:end], ("sh",)) for c in commands_of(body)]


def plantwatch_calls(command: str) -> list[list[str]]:
    """The ``plantwatch`` invocations in a shell line, as argument lists (without the name)."""
    calls = []
    for part in re.split(r"&&|\|\||;|\s\|\s", command):  # a|b without spaces: alternatives
        if not re.search(r"(^|\s)(\.venv/bin/)?plantwatch(\s|$)", part):
            continue
        words = shlex.split(part, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words = words[1:]  # VAR=value prefixes
        if words and words[0] in ("plantwatch", ".venv/bin/plantwatch"):
            calls.append(words[1:])
    return calls


def check_names(args: list[str]) -> None:
    """Fail unless ``args`` names existing (sub)commands and each ``--option`` they have.

    Placeholders (``ID``, ``[--note TEXT]``, ``a|b``) are fine: only the command path,
    the option names and the values of choice options are checked, like ``--help`` would.
    """
    from plantwatch.cli import cli

    command: click.Command = cli
    path = ["plantwatch"]
    words = [w.strip("[]") for w in args]
    i = 0
    while i < len(words):
        word = words[i]
        params = {o: p for p in command.params for o in (*p.opts, *p.secondary_opts)}
        if word in ("-h", "--help"):
            pass
        elif word.startswith("-"):
            name = word.split("=", 1)[0]
            assert name in params, f"`{' '.join(path)}` has no option {name} (in {args})"
            param = params[name]
            takes_value = isinstance(param, click.Option) and not (param.is_flag or param.count)
            if takes_value and "=" not in word:
                i += 1
                value = words[i] if i < len(words) else ""
                if isinstance(param.type, click.Choice) and not value.startswith("$"):
                    for alternative in value.split("|"):
                        assert alternative in param.type.choices, (
                            f"`{' '.join(path)} {name}`: {alternative!r} is not one of "
                            f"{list(param.type.choices)}"
                        )
        elif isinstance(command, click.Group):
            sub = command.commands.get(word)
            assert sub is not None, f"`{' '.join(path)}` has no command {word!r} (in {args})"
            command = sub
            path.append(word)
        i += 1
    done = {"-h", "--help", "--version"} & set(words)
    assert done or not isinstance(command, click.Group), f"`{' '.join(path)}` needs a command"


DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_commands_name_real_commands_and_options(doc: Path) -> None:
    calls = [
        args
        for body in code_blocks(doc.read_text())
        for command in commands_of(body)
        for args in plantwatch_calls(command)
    ]
    assert calls or doc.name not in ("README.md", "operations.md", "alerting.md")
    for args in calls:
        check_names(args)


def test_check_names_refuses_unknown_commands_and_options() -> None:
    check_names(["tickets", "close", "ID", "--outcome", "confirmed|false-alarm", "--note", "x"])
    check_names(["--influx-url", "http://x:1", "status", "--json"])
    for wrong, why in (
        (["tickets", "lsit"], "no command 'lsit'"),
        (["history", "pump-1", "--since", "2d", "--png", "x.png"], "no option --png"),
        (["tickets", "close", "1", "--outcome", "fixed"], "'fixed' is not one of"),
        (["profile"], "needs a command"),
    ):
        with pytest.raises(AssertionError, match=re.escape(why)):
            check_names(wrong)


def test_every_step_has_its_readme_command() -> None:
    """The steps and the README's tour stay in step (also without the services)."""
    commands = tour_commands()
    for step in STEPS:
        assert any(re.fullmatch(step.command, c) for c in commands), (
            f"no README tour command matches the step {step.command!r}: update STEPS"
        )
        for text, _ in step.scaled:
            assert any(text in c for c in commands if re.fullmatch(step.command, c))


def _step(command: str) -> Step | None:
    return next((s for s in STEPS if re.fullmatch(s.command, command)), None)


def _run(script: str, cwd: Path, env: dict[str, str], until: tuple[str, ...]) -> tuple[int, str]:
    """``bash -c script``: its exit status and output; with ``until``, Ctrl-C after those lines."""
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches it (and only it)
    )
    lines: list[str] = []
    waiting = set(until)
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            waiting.difference_update([p for p in list(waiting) if re.search(p, line)])
            if until and not waiting:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if until:
            if not seen.wait(240):
                pytest.fail(f"no lines matching {waiting} in 240 s:\n{''.join(lines)[-4000:]}")
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(10)
    assert proc.stdout is not None
    proc.stdout.close()
    return proc.returncode, "".join(lines)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_readme_tour_after_a_short_demo(
    live_services: Settings, sim_model_dir: Path, tmp_path: Path
) -> None:
    """After a short `make demo`, each tour command does and prints what the README says."""
    work = tmp_path / "plantwatch"  # a scratch checkout: .venv, and ../shared for the data
    work.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The profile the demo saves: the suite's own state directory keeps none.
    env["PLANTWATCH_PROFILE_FILE"] = str(tmp_path / "profile.json")
    assignments: list[str] = []
    used: set[str] = set()
    timings: list[str] = []
    run_dir: Path | None = None
    for command in tour_commands():
        step = _step(command) or Step(re.escape(command))
        used.add(step.command)
        if re.fullmatch(r"[A-Za-z_]\w*=(\"[^\"]*\"|'[^']*'|\S*)", command):
            assignments.append(command)
            continue
        script, cwd, extra = command, work, {}
        for text, smaller in step.scaled:
            script = script.replace(text, smaller)
        if step.help_only is not None:  # the command and its options exist, at least
            check_names(plantwatch_calls(command)[0])
            script = f"{script} --help"
        if command == "make demo":
            make = shutil.which("make")
            script = "make demo" if make else "scripts/demo.sh"
            cwd, extra = REPO, {**DEMO_ENV, "PLANTWATCH_MODELS_DIR": str(sim_model_dir)}
        started = time.monotonic()
        status, output = _run("\n".join([*assignments, script]), cwd, env | extra, step.until)
        timings.append(f"{time.monotonic() - started:6.1f}s  {script}")
        with (tmp_path / "tour.txt").open("a") as transcript:  # for a closing note
            transcript.write(f"$ {script}    # exit {status}\n{output}\n")
        where = f"README command `{command}` (run as `{script}`)"
        assert status == step.status, f"{where}: exit {status}, expected {step.status}:\n{output}"
        for pattern in step.prints:
            assert re.search(pattern, output, re.M), (
                f"{where}: no line matches {pattern!r}:\n{output}"
            )
        for name in step.files:
            assert (work / name).is_file(), f"{where}: wrote no {name}:\n{output}"
        if step.check is not None:
            step.check(output)
        if command == "make demo":
            found = re.search(rf"\(profile ({RUN})\)", output)
            assert found is not None, output
            run_dir = REPO / ".state" / "demo" / found.group(1)
    print("\n".join(timings), f"\ntranscript: {tmp_path / 'tour.txt'}")
    unused = [s.command for s in STEPS if s.command not in used]
    assert not unused, f"steps that match no README tour command: {unused}"
    if run_dir is not None:  # passed: the demo run's files go (its topics stay till `down`)
        shutil.rmtree(run_dir, ignore_errors=True)
