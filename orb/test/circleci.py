#!/usr/bin/env python3
"""Runs orb commands and config jobs on this machine the way CircleCI runs them.

    circleci.py command ORB_YML COMMAND [NAME=VALUE ...]
    circleci.py job CONFIG_YML JOB --orb NAME=ORB_YML [--checkout DIR]
    circleci.py workflow CONFIG_YML WORKFLOW --orb NAME=ORB_YML --checkout DIR --root DIR

What it does as CircleCI does: checks each invocation's parameters against the
command's declaration (unknown, missing and mistyped ones are errors) and fills
in defaults; replaces `<< parameters.NAME >>` in the command's steps; expands
orb commands (`alias/name`, or a bare `name` inside the orb) and `when`/`unless`
conditional steps; runs each `run` step as a script file with
`/bin/bash -eo pipefail` (or the step's `shell`), in the job's working folder,
with the job's and the step's `environment` over the inherited environment and
BASH_ENV pointing at one file per job (bash sources it at each step's start);
honours `when: on_success|on_fail|always`; `checkout` copies a folder.

What it leaves to the caller: the CIRCLE_* variables (CIRCLECI, CIRCLE_JOB,
CIRCLE_WORKFLOW_ID, ...), except that `workflow` sets CIRCLE_JOB per job; and
contexts, which come from the inherited environment. Executors (docker,
machine) are not started: steps run on this machine.
"""

import argparse
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

PARAM = re.compile(r"<<\s*parameters\.([A-Za-z0-9_-]+)\s*>>")
WHOLE_PARAM = re.compile(r"^\s*<<\s*parameters\.([A-Za-z0-9_-]+)\s*>>\s*$")
ENV_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ConfigError(Exception):
    pass


def log(message):
    print(message, file=sys.stderr, flush=True)


def coerce(name, spec, value, where):
    """Checks `value` against a parameter declaration, as CircleCI's compiler does."""
    kind = spec.get("type")
    if kind in ("string", "env_var_name"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: parameter {name} must be a string, not {value!r}")
        if kind == "env_var_name" and not ENV_NAME.match(value):
            raise ConfigError(f"{where}: parameter {name} is not an environment variable name: {value!r}")
        return value
    if kind == "boolean":
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: parameter {name} must be a boolean, not {value!r}")
        return value
    if kind == "integer":
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: parameter {name} must be an integer, not {value!r}")
        return value
    if kind == "enum":
        if value not in spec.get("enum", []):
            raise ConfigError(f"{where}: parameter {name} must be one of {spec.get('enum')}, not {value!r}")
        return value
    raise ConfigError(f"{where}: parameter {name} has a type this runner does not handle: {kind}")


def resolve_parameters(declared, given, where):
    declared = declared or {}
    given = given or {}
    for name in given:
        if name not in declared:
            raise ConfigError(f"{where}: unknown parameter {name} (declared: {', '.join(declared)})")
    values = {}
    for name, spec in declared.items():
        if name in given:
            value = given[name]
        elif "default" in spec:
            value = spec["default"]
        else:
            raise ConfigError(f"{where}: missing required parameter {name}")
        values[name] = coerce(name, spec, value, where)
    return values


def as_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def substitute(node, values, where):
    """Replaces << parameters.NAME >>; a value that is only that keeps the parameter's type."""
    if isinstance(node, dict):
        return {substitute(k, values, where): substitute(v, values, where) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(item, values, where) for item in node]
    if isinstance(node, str):
        def lookup(name):
            if name not in values:
                raise ConfigError(f"{where}: << parameters.{name} >> is not a declared parameter")
            return values[name]

        whole = WHOLE_PARAM.match(node)
        if whole:
            return lookup(whole.group(1))
        return PARAM.sub(lambda match: as_text(lookup(match.group(1))), node)
    return node


def truthy(condition):
    if isinstance(condition, dict):
        if len(condition) != 1:
            raise ConfigError(f"a logic statement has one key: {condition!r}")
        ((operator, operand),) = condition.items()
        if operator == "equal":
            return all(item == operand[0] for item in operand[1:])
        if operator == "and":
            return all(truthy(item) for item in operand)
        if operator == "or":
            return any(truthy(item) for item in operand)
        if operator == "not":
            return not truthy(operand)
        raise ConfigError(f"unknown logic operator {operator}")
    return condition not in (None, False, "", 0, "false")


class Job:
    """One job: a working folder, a BASH_ENV file and a status."""

    def __init__(self, orbs, workdir, checkout=None, environment=None):
        self.orbs = orbs
        self.workdir = pathlib.Path(workdir)
        self.checkout = checkout
        self.environment = {k: as_text(v) for k, v in (environment or {}).items()}
        self.failed = False
        self.bash_env = os.environ.get("BASH_ENV")
        if not self.bash_env:
            handle, self.bash_env = tempfile.mkstemp(prefix="circleci-bash-env-")
            os.close(handle)

    def run_steps(self, steps, scope, where):
        for index, step in enumerate(steps or []):
            self.run_step(step, scope, f"{where}.steps[{index}]")

    def run_step(self, step, scope, where):
        if isinstance(step, str):
            name, args = step, {}
        elif isinstance(step, dict) and len(step) == 1:
            ((name, args),) = step.items()
        else:
            raise ConfigError(f"{where}: a step is a name or a one-key mapping: {step!r}")
        if name == "run":
            self.run_run(args, where)
        elif name == "checkout":
            self.run_checkout()
        elif name in ("when", "unless"):
            holds = truthy(args.get("condition"))
            if holds == (name == "when"):
                self.run_steps(args.get("steps"), scope, f"{where}.{name}")
        elif "/" in name:
            alias, command = name.split("/", 1)
            if alias not in self.orbs:
                raise ConfigError(f"{where}: no orb imported as {alias}")
            self.run_command(self.orbs[alias], command, args, f"{alias}/{command}")
        elif scope is not None and name in scope.get("commands", {}):
            self.run_command(scope, name, args, name)
        else:
            raise ConfigError(f"{where}: this runner does not run the step {name}")

    def run_command(self, orb, command, args, where):
        commands = orb.get("commands") or {}
        if command not in commands:
            raise ConfigError(f"{where}: the orb has no command {command} (it has {', '.join(commands)})")
        definition = commands[command]
        values = resolve_parameters(definition.get("parameters"), args if isinstance(args, dict) else {}, where)
        steps = substitute(definition["steps"], values, where)
        self.run_steps(steps, orb, where)

    def run_checkout(self):
        if self.checkout is None:
            raise ConfigError("checkout: no --checkout folder given")
        shutil.copytree(self.checkout, self.workdir, dirs_exist_ok=True, symlinks=True)
        log("==> Checkout code")

    def run_run(self, args, where):
        if isinstance(args, str):
            args = {"command": args}
        command = args.get("command")
        if not isinstance(command, str):
            raise ConfigError(f"{where}: run needs a command")
        title = args.get("name") or command.splitlines()[0]
        when = args.get("when", "on_success")
        if when not in ("on_success", "on_fail", "always"):
            raise ConfigError(f"{where}: when must be on_success, on_fail or always, not {when!r}")
        if (when == "on_success" and self.failed) or (when == "on_fail" and not self.failed):
            log(f"==> {title} (skipped: when {when})")
            return
        log(f"==> {title}")
        env = dict(os.environ)
        env.update(self.environment)
        env.update({k: as_text(v) for k, v in (args.get("environment") or {}).items()})
        env["BASH_ENV"] = self.bash_env
        shell = shlex.split(args.get("shell", "/bin/bash -eo pipefail"))
        workdir = self.workdir / args.get("working_directory", ".")
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
            script.write(command)
        try:
            result = subprocess.run([*shell, script.name], cwd=workdir, env=env, check=False)
        finally:
            os.unlink(script.name)
        if result.returncode != 0:
            log(f"==> {title}: exited with code {result.returncode}")
            self.failed = True


def load(path):
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file)


def orbs_for(config, available):
    """Maps the config's orb aliases to packed orbs given as NAME=ORB_YML."""
    packed = {}
    for item in available:
        name, _, path = item.partition("=")
        packed[name] = load(path)
    orbs = {}
    for alias, reference in (config.get("orbs") or {}).items():
        if isinstance(reference, dict):
            orbs[alias] = reference  # an inline orb
            continue
        name = reference.split("@", 1)[0]
        if name not in packed:
            raise ConfigError(f"orbs.{alias}: no packed orb given for {reference} (use --orb {name}=ORB_YML)")
        orbs[alias] = packed[name]
    return orbs


def check_executor(job, orbs, name):
    executor = job.get("executor")
    if isinstance(executor, dict):
        executor = executor.get("name")
    if isinstance(executor, str) and "/" in executor:
        alias, executor_name = executor.split("/", 1)
        if executor_name not in ((orbs.get(alias) or {}).get("executors") or {}):
            raise ConfigError(f"jobs.{name}: the orb {alias} has no executor {executor_name}")


def run_job(config, orbs, name, workdir, checkout):
    jobs = config.get("jobs") or {}
    if name not in jobs:
        raise ConfigError(f"no job {name} in the config (it has {', '.join(jobs)})")
    definition = jobs[name]
    check_executor(definition, orbs, name)
    job = Job(orbs, workdir, checkout, definition.get("environment"))
    job.run_steps(definition.get("steps"), None, f"jobs.{name}")
    return job


def workflow_order(config, workflow):
    workflows = config.get("workflows") or {}
    if workflow not in workflows:
        raise ConfigError(f"no workflow {workflow} in the config (it has {', '.join(map(str, workflows))})")
    entries = []
    for entry in workflows[workflow]["jobs"]:
        if isinstance(entry, str):
            entries.append((entry, []))
        else:
            ((job, options),) = entry.items()
            entries.append((job, (options or {}).get("requires", [])))
    order, done = [], set()
    while len(order) < len(entries):
        ready = [job for job, needs in entries if job not in done and all(n in done for n in needs)]
        if not ready:
            raise ConfigError(f"workflow {workflow}: requires form a cycle or name unknown jobs")
        order.append(ready[0])
        done.add(ready[0])
    return order


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    command = sub.add_parser("command", help="run one orb command in the current folder")
    command.add_argument("orb")
    command.add_argument("name")
    command.add_argument("params", nargs="*", metavar="NAME=VALUE")
    job = sub.add_parser("job", help="run one job of a config in the current folder")
    job.add_argument("config")
    job.add_argument("name")
    job.add_argument("--orb", action="append", default=[], metavar="NAME=ORB_YML")
    job.add_argument("--checkout", metavar="DIR")
    workflow = sub.add_parser("workflow", help="run a workflow's jobs in order, each in ROOT/JOB")
    workflow.add_argument("config")
    workflow.add_argument("name")
    workflow.add_argument("--orb", action="append", default=[], metavar="NAME=ORB_YML")
    workflow.add_argument("--checkout", metavar="DIR")
    workflow.add_argument("--root", required=True)
    args = parser.parse_args(argv[1:])

    try:
        if args.mode == "command":
            orb = load(args.orb)
            given = {}
            for param in args.params:
                key, sep, value = param.partition("=")
                if not sep:
                    raise ConfigError(f"parameters are NAME=VALUE, not {param!r}")
                given[key] = value
            runner = Job({}, os.getcwd())
            runner.run_command(orb, args.name, given, args.name)
            return 1 if runner.failed else 0
        config = load(args.config)
        orbs = orbs_for(config, args.orb)
        if args.mode == "job":
            return 1 if run_job(config, orbs, args.name, os.getcwd(), args.checkout).failed else 0
        for name in workflow_order(config, args.name):
            workdir = pathlib.Path(args.root) / name
            workdir.mkdir(parents=True, exist_ok=True)
            os.environ["CIRCLE_JOB"] = name
            os.environ.pop("BASH_ENV", None)
            log(f"=== job {name} in {workdir}")
            if run_job(config, orbs, name, workdir, args.checkout).failed:
                log(f"=== job {name} failed")
                return 1
        return 0
    except ConfigError as error:
        log(f"circleci.py: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
