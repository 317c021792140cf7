"""Helpers for the benchmarks: ports, readiness polling, wrk parsing, the
Apache configuration, bench/run's summary (its command line), and the server
processes of the Python scripts (bench/interpreters, bench/speed).

Standard library only: it runs on the host's python3 before any venv exists.
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

EXPECTED_BODY = "Hello from Flask inside wasgi!\n"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def alive(pid):
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): look at its state too.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


# ------------------------------------------- server processes (Python scripts)
PROCS = []  # started by spawn and not stopped yet: stop_all ends them at exit


def spawn(cmd, log, env=None):
    """Starts a server in its own session (so stop ends its workers too), output to log."""
    f = open(log, "w")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    p.log = log
    PROCS.append(p)
    return p


def stop(p):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def stop_all(*_):
    for p in list(PROCS):
        stop(p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=30):
    """GET on 127.0.0.1:port; (status, body as text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def exited(proc):
    """Why a server is gone: its exit code and its log's last line."""
    try:
        with open(proc.log, errors="replace") as f:
            lines = [line.strip() for line in ANSI.sub("", f.read()).splitlines() if line.strip()]
    except OSError:
        lines = []
    last = f": {lines[-1][:240]}" if lines else ""
    return f"exited ({proc.returncode}){last}; see {proc.log}"


def wait_200(port, proc, since, timeout=120, path="/"):
    """Polls GET path every millisecond; returns seconds from `since` (monotonic) to the first 200."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"before answering ({last}): {exited(proc)}")
        try:
            status, _ = http_get(port, path, timeout=timeout)
            if status == 200:
                return time.monotonic() - since
            last = f"status {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.001)
    raise RuntimeError(f"no 200 within {timeout}s ({last}); see {proc.log}")


def wait_log(proc, pattern, count=1, timeout=60):
    """Waits until the process's log matches the regex `count` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(proc.log, errors="replace") as f:
            if len(re.findall(pattern, f.read())) >= count:
                return
        if proc.poll() is not None:
            raise RuntimeError(exited(proc))
        time.sleep(0.02)
    raise RuntimeError(f"{pattern!r} x{count} not logged within {timeout}s; see {proc.log}")


def wrk_measure(port, name, out_dir, check, conns, duration, warmup, path="/"):
    """check(port, what) raises unless the answer is right; it runs before the
    warm-up and after the measured run, so a server that breaks under load
    gives no figure. Returns parse_wrk's figures of the measured run."""
    url = f"http://127.0.0.1:{port}{path}"
    check(port, name)
    subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{warmup}", url], stdout=subprocess.DEVNULL, check=True)
    out = os.path.join(out_dir, f"wrk-{name}.txt")
    with open(out, "w") as f:
        subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency", url], stdout=f, check=True)
    check(port, name + " (after the load)")
    figures = parse_wrk(out)
    errors = figures["non_2xx"] + sum(figures["socket_errors"].values())
    print(f"    {name}: {figures['rps']:.0f} req/s, p50 {figures.get('p50_ms', 0):.2f} ms, "
          f"p99 {figures.get('p99_ms', 0):.2f} ms"
          + (f"  ! {figures['non_2xx']} non-2xx, socket errors {figures['socket_errors']}" if errors else ""),
          file=sys.stderr, flush=True)
    return figures


# ------------------------------------------------------------------- Apache
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"


def apache_missing():
    """What of Debian's apache2 and mod_wsgi is not installed, or None."""
    for path in (APACHE, os.path.join(APACHE_MODULES, "mod_wsgi.so")):
        if not os.path.exists(path):
            return path
    return None


def apache_conf(apache_dir, port, log, site):
    """Writes apache_dir/httpd.conf (the directory made afresh) for an
    unprivileged Apache on 127.0.0.1:port, event MPM, errors to log, with
    `site` (mod_wsgi or mod_proxy directives) at the end; returns its path.
    As root, Apache's children (and mod_wsgi's daemons) run as www-data: the
    directories it reads must be world-readable."""
    shutil.rmtree(apache_dir, ignore_errors=True)
    os.makedirs(apache_dir)
    os.chmod(apache_dir, 0o755)
    user = "User www-data\nGroup www-data\n" if os.getuid() == 0 else ""
    conf = os.path.join(apache_dir, "httpd.conf")
    with open(conf, "w") as f:
        f.write(f"""ServerRoot {apache_dir}
ServerName localhost
Listen 127.0.0.1:{port}
{user}LoadModule mpm_event_module {APACHE_MODULES}/mod_mpm_event.so
LoadModule authz_core_module {APACHE_MODULES}/mod_authz_core.so
LoadModule proxy_module {APACHE_MODULES}/mod_proxy.so
LoadModule proxy_http_module {APACHE_MODULES}/mod_proxy_http.so
LoadModule wsgi_module {APACHE_MODULES}/mod_wsgi.so
PidFile {apache_dir}/httpd.pid
DefaultRuntimeDir {apache_dir}
Mutex file:{apache_dir} default
ErrorLog {log}
LogLevel warn
WSGISocketPrefix {apache_dir}/wsgi
StartServers 1
ServerLimit 2
ThreadsPerChild 32
{site}
""")
    return conf


def modwsgi_site(name, script, python_path):
    """mod_wsgi in daemon mode as bench/run and bench/speed measure it:
    processes=2 threads=1, the app in the main interpreter."""
    d = os.path.dirname(script)
    return (f"WSGIDaemonProcess {name} processes=2 threads=1 python-path={':'.join(python_path)}\n"
            f"WSGIScriptAlias / {script} process-group={name} application-group=%{{GLOBAL}}\n"
            f"<Directory {d}>\n    Require all granted\n</Directory>")


# ---------------------------------------------------------------- commands

def cmd_freeport(args):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_wait_log(args):
    """Waits until the log contains the word; prints the "ready in" seconds."""
    deadline = time.monotonic() + args.timeout
    word = re.compile(r"\b%s\b" % re.escape(args.word))
    while True:
        try:
            with open(args.log, errors="replace") as f:
                text = ANSI.sub("", f.read())
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            if word.search(line):
                m = re.search(r"ready in ([0-9.]+)s", line)
                print(m.group(1) if m else "")
                return 0
        if not alive(args.pid):
            sys.stderr.write(f"the server (pid {args.pid}) exited before logging {args.word!r}; see {args.log}\n")
            return 1
        if time.monotonic() > deadline:
            sys.stderr.write(f"no {args.word!r} in {args.log} after {args.timeout:.0f}s\n")
            return 1
        time.sleep(0.05)


def get(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


def cmd_wait_http(args):
    """Polls url until it answers 200; prints seconds since --since (epoch)."""
    start = args.since if args.since else time.time()
    deadline = time.monotonic() + args.timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive(args.pid):
            sys.stderr.write(f"the server (pid {args.pid}) exited before answering {args.url} ({last})\n")
            return 1
        try:
            # A listener that is bound but not serving yet holds the request
            # in its backlog: the answer then comes the moment it is ready.
            status, _ = get(args.url, max(0.5, deadline - time.monotonic()))
            if status == 200:
                print(f"{time.time() - start:.3f}")
                return 0
            last = f"status {status}"
        except urllib.error.HTTPError as e:
            last = f"status {e.code}"
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.005)
    sys.stderr.write(f"{args.url} did not answer 200 within {args.timeout:.0f}s (last: {last})\n")
    return 1


def cmd_get(args):
    """Prints the body; with --expect, fails unless it is 200 with that body."""
    try:
        status, body = get(args.url, args.timeout)
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode("utf-8", "replace")
    if args.expect is not None:
        expected = args.expect.encode().decode("unicode_escape")
        if status != 200 or body != expected:
            sys.stderr.write(f"{args.url}: expected 200 {expected!r}, got {status} {body[:200]!r}\n")
            return 1
    elif status != 200:
        sys.stderr.write(f"{args.url}: status {status}: {body[:500]}\n")
        return 1
    sys.stdout.write(body)
    return 0


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot read the latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(path):
    with open(path) as f:
        text = f.read()
    out = {"file": path}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not m:
        raise ValueError(f"{path}: no Requests/sec line in wrk's output:\n{text}")
    out["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        if m:
            out[f"p{pct}_ms"] = to_ms(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+)", text, re.M)
    out["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    )
    return out


def median_of(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def server_figures(files):
    runs = [parse_wrk(f) for f in files]
    return {
        "rps": median_of(runs, "rps"),
        "p50_ms": median_of(runs, "p50_ms"),
        "p99_ms": median_of(runs, "p99_ms"),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(sum(r["socket_errors"].values()) for r in runs),
        "runs": runs,
    }


def log_problems(paths):
    """WARN/ERROR lines of the server logs (tracing's levels, gunicorn's)."""
    found = []
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                lines = ANSI.sub("", f.read()).splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            if re.search(r"\b(WARN|ERROR|CRITICAL|Traceback)\b|\[(ERROR|CRITICAL)\]", line):
                found.append(f"{os.path.basename(path)}: {line.strip()}")
    return found


def version_of(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def fmt(value, spec, suffix=""):
    return "n/a" if value is None else format(value, spec) + suffix


def cmd_summary(args):
    wasgi = server_figures(args.wasgi_wrk)
    gunicorn = server_figures(args.gunicorn_wrk)
    single = server_figures(args.wasgi1_wrk)
    modwsgi = server_figures(args.modwsgi_wrk) if args.modwsgi_wrk else None
    behind = server_figures(args.apache_wasgi_wrk) if args.apache_wasgi_wrk else None
    behind_ratio = behind["rps"] / modwsgi["rps"] if modwsgi and behind and modwsgi["rps"] and behind["rps"] else None

    inguest_all = []
    for path in args.inguest:
        with open(path) as f:
            m = re.match(r"\s*([0-9.]+) calls/s", f.read())
        inguest_all.append(float(m.group(1)) if m else None)
    inguest = inguest_all[-1] if inguest_all else None  # the second query: warm

    ratio = wasgi["rps"] / gunicorn["rps"] if wasgi["rps"] and gunicorn["rps"] else None
    overhead = 1 - single["rps"] / inguest if single["rps"] and inguest else None
    warm = statistics.median(args.warm_start) if args.warm_start else None
    problems = log_problems(args.log)

    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "duration": args.duration,
            "connections": args.connections,
            "connections_1instance": args.connections_single,
            "warmup": args.warmup,
            "rounds": len(args.wasgi_wrk),
            "cores": os.cpu_count(),
            "machine": platform.machine(),
            "host_python": platform.python_version(),
            "wasgi_commit": version_of(["git", "rev-parse", "--short", "HEAD"]),
            "wrk": version_of(["sh", "-c", "wrk -v 2>&1 | head -1"]),
        },
        "wasgi_2_instances": wasgi,
        "gunicorn_2_sync_workers": gunicorn,
        "ratio_wasgi_over_gunicorn": ratio,
        "apache_mod_wsgi_2x1": modwsgi,
        "apache_proxy_to_wasgi_2_instances": behind,
        "ratio_apache_wasgi_over_mod_wsgi": behind_ratio,
        "inguest_calls_per_s": inguest,
        "inguest_calls_per_s_all": inguest_all,
        "wasgi_1_instance": single,
        "host_overhead": overhead,
        "ready_in_first_start_s": args.ready_in,
        "warm_start_s": warm,
        "warm_start_s_all": args.warm_start,
        "log_problems": problems,
    }
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")

    rows = [
        ("wasgi --instances 2", f"{fmt(wasgi['rps'], '.0f')} req/s",
         f"p50 {fmt(wasgi['p50_ms'], '.2f', ' ms')}", f"p99 {fmt(wasgi['p99_ms'], '.2f', ' ms')}"),
        ("gunicorn -w 2 (sync)", f"{fmt(gunicorn['rps'], '.0f')} req/s",
         f"p50 {fmt(gunicorn['p50_ms'], '.2f', ' ms')}", f"p99 {fmt(gunicorn['p99_ms'], '.2f', ' ms')}"),
    ]
    for name, figures in (("Apache + mod_wsgi 2x1", modwsgi), ("Apache -> wasgi x2", behind)):
        if figures:
            rows.append((name, f"{fmt(figures['rps'], '.0f')} req/s",
                         f"p50 {fmt(figures['p50_ms'], '.2f', ' ms')}", f"p99 {fmt(figures['p99_ms'], '.2f', ' ms')}"))
    w = max(len(r[0]) for r in rows)
    print()
    print(f"== wasgi benchmark: examples/hello (Flask), wrk -t1 -c{args.connections} -d{args.duration}"
          f", {len(args.wasgi_wrk)} round(s), {os.cpu_count()} cores ==")
    for r in rows:
        print(f"  {r[0]:<{w}}  {r[1]:>12}  {r[2]:>14}  {r[3]:>14}")
    print(f"  {'ratio wasgi / gunicorn':<{w}}  {fmt(ratio, '.2f', 'x'):>12}")
    if modwsgi:
        print(f"  {'ratio behind Apache':<{w}}  {fmt(behind_ratio, '.2f', 'x'):>12}   (Apache -> wasgi / Apache + mod_wsgi)")
    print()
    print(f"  {'in-guest Flask calls':<{w}}  {fmt(inguest, '.0f', ' calls/s'):>12}   (1 guest, no HTTP)")
    print(f"  {'wasgi --instances 1':<{w}}  {fmt(single['rps'], '.0f', ' req/s'):>12}   "
          f"(HTTP, wrk -c{args.connections_single}; p50 {fmt(single['p50_ms'], '.2f', ' ms')})")
    print(f"  {'host overhead':<{w}}  {fmt(overhead * 100 if overhead is not None else None, '.1f', ' %'):>12}"
          f"   (1 - HTTP req/s / in-guest calls/s)")
    print()
    print(f"  {'ready in (log, 1st start)':<{w}}  {fmt(args.ready_in, '.2f', ' s'):>12}")
    print(f"  {'warm start to first 200':<{w}}  {fmt(warm, '.2f', ' s'):>12}   (2 instances, warm module cache)")
    print()
    bad = [(name, s) for name, s in (("wasgi x2", wasgi), ("gunicorn", gunicorn), ("wasgi x1", single),
                                     ("mod_wsgi", modwsgi), ("Apache -> wasgi", behind))
           if s and (s["non_2xx"] or s["socket_errors"])]
    for name, s in bad:
        print(f"  ! {name}: {s['non_2xx']} non-2xx responses, {s['socket_errors']} socket errors (see {args.out})")
    if problems:
        print(f"  ! {len(problems)} warning/error line(s) in the server logs, e.g.:")
        for line in problems[:5]:
            print(f"      {line[:160]}")
    print(f"  results: {args.out}")
    return 0


def cmd_apache_conf(args):
    """Writes the httpd.conf and prints its path (for bench/run)."""
    if args.modwsgi:
        name, script, python_path = args.modwsgi
        site = modwsgi_site(name, script, python_path.split(":"))
    else:
        site = args.site
    print(apache_conf(args.dir, args.port, args.log, site))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("freeport").set_defaults(func=cmd_freeport)

    s = sub.add_parser("apache-conf")
    s.add_argument("dir")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--log", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--site", help="directives to append")
    g.add_argument("--modwsgi", nargs=3, metavar=("NAME", "SCRIPT", "PYTHONPATH"),
                   help="mod_wsgi daemon mode, processes=2 threads=1")
    s.set_defaults(func=cmd_apache_conf)

    s = sub.add_parser("wait-log")
    s.add_argument("log")
    s.add_argument("--word", default="serving")
    s.add_argument("--timeout", type=float, default=300)
    s.add_argument("--pid", type=int)
    s.set_defaults(func=cmd_wait_log)

    s = sub.add_parser("wait-http")
    s.add_argument("url")
    s.add_argument("--since", type=float, help="epoch seconds the server was started at")
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--pid", type=int)
    s.set_defaults(func=cmd_wait_http)

    s = sub.add_parser("get")
    s.add_argument("url")
    s.add_argument("--expect", help="the exact body wanted (backslash escapes allowed)")
    s.add_argument("--timeout", type=float, default=120)
    s.set_defaults(func=cmd_get)

    s = sub.add_parser("summary")
    s.add_argument("--out", required=True)
    s.add_argument("--wasgi-wrk", action="append", required=True)
    s.add_argument("--gunicorn-wrk", action="append", required=True)
    s.add_argument("--wasgi1-wrk", action="append", required=True)
    s.add_argument("--modwsgi-wrk", action="append")
    s.add_argument("--apache-wasgi-wrk", action="append")
    s.add_argument("--inguest", action="append", default=[])
    s.add_argument("--ready-in", type=lambda v: float(v) if v else None)
    s.add_argument("--warm-start", type=float, action="append", default=[])
    s.add_argument("--log", action="append", default=[])
    s.add_argument("--duration", default="")
    s.add_argument("--connections", default="")
    s.add_argument("--connections-single", default="")
    s.add_argument("--warmup", default="")
    s.set_defaults(func=cmd_summary)

    args = p.parse_args()
    sys.exit(args.func(args) or 0)


if __name__ == "__main__":
    main()
