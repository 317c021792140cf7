//! asyncio and threads in a guest (issue 15): an instance is one thread, and
//! WASI has neither threads nor socketpair(). Without the bridge's help
//! `asyncio.run()` fails with `OSError: [Errno 58]` (the selector loop's
//! self-pipe), so Django's async views (asgiref's `async_to_sync`) fail too,
//! and a started thread fails with a bare "can't start new thread".
//!
//! With it: the event loop runs without a self-pipe, `ThreadPoolExecutor`
//! (so `asyncio.to_thread` and asgiref) runs each task in place, and a
//! started thread is refused with a RuntimeError that names the sandbox and
//! what to do, which the log repeats with the place that asked.

use std::path::Path;

use wasgi_tests::{own_interpreter, pip_packages, TempDir, Wasgi};

/// asyncio's everyday parts in a plain WSGI view; `/open` leaves a loop
/// open and set as the thread's loop (as a careless app would); `/thread`
/// starts a thread and answers what it was told.
const ASYNCIO_APP: &str = r#"import asyncio, threading, time

async def double(i):
    await asyncio.sleep(0.05)
    return i * 2

async def everyday():
    start = time.monotonic()
    values = await asyncio.gather(*(double(i) for i in range(5)))
    slept = time.monotonic() - start
    try:
        await asyncio.wait_for(asyncio.sleep(10), 0.05)
        timeout = "no"
    except TimeoutError:
        timeout = "yes"
    return [f"values={values}", f"slept_enough={slept >= 0.05}", f"timed_out={timeout}"]

async def in_threads():
    # Run in place: the work is done, the result the same.
    total = await asyncio.to_thread(sum, [1, 2, 3])
    nested = await asyncio.to_thread(asyncio.run, double(4))
    return [f"to_thread={total}", f"nested_run={nested}"]

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/open":
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        lines = [f"left_open={loop.run_until_complete(double(21))}"]
    elif path == "/thread":
        try:
            threading.Thread(target=print, daemon=True).start()
            lines = ["started"]
        except RuntimeError as e:
            lines = [f"refused={e}"]
    elif path == "/pool":
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=4) as pool:
            lines = [f"pool={list(pool.map(abs, [-1, -2, -3]))}"]
        lines += asyncio.run(in_threads())
    else:
        lines = asyncio.run(everyday())
        loop = asyncio.new_event_loop()
        lines.append(f"new_loop={loop.run_until_complete(double(1))}")
        loop.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(lines).encode()]
"#;

fn serve_app(dir: &Path, interpreter: &str, extra: &[&str]) -> Wasgi {
    let script = dir.join("app.wsgi");
    std::fs::write(&script, ASYNCIO_APP).unwrap();
    let mut args = vec![script.to_str().unwrap(), "--interpreter", interpreter, "--instances", "1"];
    args.extend_from_slice(extra);
    Wasgi::start(&args)
}

fn ok(server: &Wasgi, path: &str) -> String {
    let r = server.get(path);
    assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), server.log.text());
    r.text()
}

const EVERYDAY: &str = "values=[0, 2, 4, 6, 8]\nslept_enough=True\ntimed_out=yes\nnew_loop=2";

/// `asyncio.run` with `gather`, `sleep` and a timeout, and a loop of the
/// app's own, request after request on one instance; a loop a request left
/// open (and set) does not spoil the next.
#[test]
fn asyncio_run_works_request_after_request() {
    own_interpreter();
    let dir = TempDir::new("asyncio-run");
    let server = serve_app(dir.path(), "cpython-3.13", &[]);
    for round in 0..3 {
        assert_eq!(ok(&server, "/"), EVERYDAY, "round {round}");
        assert_eq!(ok(&server, "/open"), "left_open=42", "round {round}");
    }
    assert_eq!(ok(&server, "/"), EVERYDAY);
}

/// The pinned 3.12 has the same event loop (it has no ThreadPoolExecutor:
/// its `concurrent.futures.thread` is missing).
#[test]
fn asyncio_run_works_on_the_pinned_build() {
    let dir = TempDir::new("asyncio-pinned");
    let server = serve_app(dir.path(), "cpython-3.12", &[]);
    for _ in 0..2 {
        assert_eq!(ok(&server, "/"), EVERYDAY);
    }
}

/// From a snapshot whose warm-up ran the event loop and a thread pool (the
/// bridge's changes are in the snapshot), in every instance it starts.
#[test]
fn asyncio_works_from_a_snapshot() {
    own_interpreter();
    let dir = TempDir::new("asyncio-snapshot");
    for isolation in ["instance", "request"] {
        let server = serve_app(dir.path(), "cpython-3.13", &["--snapshot", "--isolation", isolation, "--warmup", "/", "--warmup", "/pool"]);
        for _ in 0..2 {
            assert_eq!(ok(&server, "/"), EVERYDAY, "{isolation}");
            assert_eq!(ok(&server, "/open"), "left_open=42", "{isolation}");
            assert_eq!(ok(&server, "/pool"), "pool=[1, 2, 3]\nto_thread=6\nnested_run=8", "{isolation}");
            assert!(ok(&server, "/thread").starts_with("refused=can't start a new thread: the wasgi sandbox"), "{isolation}");
        }
    }
}

/// A ThreadPoolExecutor, `asyncio.to_thread` (and `asyncio.run` inside it)
/// run each task in place and give its result.
#[test]
fn thread_pools_run_their_tasks_in_place() {
    own_interpreter();
    let dir = TempDir::new("asyncio-pool");
    let server = serve_app(dir.path(), "cpython-3.13", &[]);
    for _ in 0..2 {
        assert_eq!(ok(&server, "/pool"), "pool=[1, 2, 3]\nto_thread=6\nnested_run=8");
    }
    assert_eq!(ok(&server, "/"), EVERYDAY);
}

/// A started thread is refused with CPython's RuntimeError, whose message
/// names the sandbox and what to do instead; the log names the line that
/// asked, once.
#[test]
fn a_thread_is_refused_with_the_reason() {
    own_interpreter();
    let dir = TempDir::new("asyncio-thread");
    for interpreter in ["cpython-3.13", "cpython-3.12"] {
        let server = serve_app(dir.path(), interpreter, &[]);
        for _ in 0..2 {
            let text = ok(&server, "/thread");
            assert!(text.starts_with("refused=can't start a new thread: the wasgi sandbox runs each instance"), "{interpreter}: {text}");
            assert!(text.contains("raise the group's `instances`") && text.contains("external worker or queue"), "{interpreter}: {text}");
        }
        let log = server.log.wait_for("a thread was refused", std::time::Duration::from_secs(10));
        let at = format!("a thread was refused at {}:", dir.path().join("app.wsgi").display());
        assert_eq!(log.matches(&at).count(), 1, "{interpreter}: once per place:\n{log}");
        // The thread-using app still serves everything else.
        assert_eq!(ok(&server, "/"), EVERYDAY, "{interpreter}");
    }
}

/// A Django project's async view under WSGI (Django runs it through
/// asgiref's `async_to_sync`): it awaits `asyncio.sleep` and `gather`, and
/// reads the database through the ORM's async API (`sync_to_async`). A
/// view that goes async -> sync -> async is told why it cannot.
const DJANGO_SETTINGS: &str = r#"
SECRET_KEY = "wasgi-test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "asite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
"#;

const DJANGO_URLS: &str = r#"
import asyncio

from django.contrib.contenttypes.models import ContentType
from django.http import HttpResponse
from django.urls import path
from asgiref.sync import async_to_sync, sync_to_async


async def tick(i):
    await asyncio.sleep(0.01)
    return i


async def hello(request):
    ticks = await asyncio.gather(*(tick(i) for i in range(3)))
    kinds = await ContentType.objects.acount()
    first = await ContentType.objects.order_by("app_label").afirst()
    return HttpResponse(f"async view: ticks={ticks} content_types={kinds} first={first.app_label}")


def sync_calling_async():
    return async_to_sync(tick)(1)


async def nested(request):
    # async -> sync -> async: the outer loop would have to run while it is
    # paused; refused with the reason rather than waiting forever.
    try:
        return HttpResponse(f"nested={await sync_to_async(sync_calling_async)()}")
    except RuntimeError as e:
        return HttpResponse(f"refused={e}")


urlpatterns = [path("hello/", hello), path("nested/", nested)]
"#;

const DJANGO_SCRIPT: &str = r#"
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asite.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()

from django.core.management import execute_from_command_line

execute_from_command_line(["manage.py", "migrate", "--noinput", "--verbosity", "0"])
"#;

#[test]
fn django_async_view_serves_under_wsgi() {
    own_interpreter();
    let django = pip_packages("django", &["django==5.2.*"]);
    let dir = TempDir::new("asyncio-django");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("asite")).unwrap();
    std::fs::write(project.join("asite/__init__.py"), "").unwrap();
    std::fs::write(project.join("asite/settings.py"), DJANGO_SETTINGS).unwrap();
    std::fs::write(project.join("asite/urls.py"), DJANGO_URLS).unwrap();
    let script = project.join("site.wsgi");
    std::fs::write(&script, DJANGO_SCRIPT).unwrap();
    let server = Wasgi::start(&[
        script.to_str().unwrap(),
        "--interpreter",
        "cpython-3.13",
        "--python-path",
        django.to_str().unwrap(),
        "--instances",
        "1",
        "--startup-timeout",
        "300",
    ]);
    for _ in 0..3 {
        let text = ok(&server, "/hello/");
        assert_eq!(text, "async view: ticks=[0, 1, 2] content_types=1 first=contenttypes", "{}", server.log.text());
    }
    let text = ok(&server, "/nested/");
    assert!(text.starts_with("refused=async_to_sync() was called from sync code that runs under sync_to_async()"), "{text}");
    assert_eq!(ok(&server, "/hello/"), "async view: ticks=[0, 1, 2] content_types=1 first=contenttypes");
}
