//! Django's admin on our own CPython 3.13 build (`--interpreter cpython-3.13`):
//! a real project from PyPI's Django, its SQLite database in a directory
//! granted read-write, migrated and given a superuser inside the sandbox, and
//! the admin login over real HTTP. Logging in checks a PBKDF2-SHA256 password
//! hash, which needs `hashlib.pbkdf2_hmac` (OpenSSL's libcrypto): the pinned
//! 3.12.0 build and our build without OpenSSL have none. The app installs no
//! tzdata: `USE_TZ = True` and `TIME_ZONE = "UTC"` work unchanged.

use wasgi_tests::{http::Response, own_interpreter, pip_packages, TempDir, Wasgi};

const PASSWORD: &str = "correct-horse-battery-42";

const SETTINGS: &str = r#"
from pathlib import Path

SECRET_KEY = "wasgi-test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
USE_TZ = True
TIME_ZONE = "UTC"  # as `django-admin startproject` writes it
# Server errors to stderr, which is wasgi's log (DEBUG is off).
LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
"#;

const URLS: &str = r#"
from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
"#;

/// The project's WSGI file. Its first start does what `manage.py migrate` and
/// `manage.py createsuperuser --noinput` would, through Django's own command
/// line, inside the sandbox (wasgi has no command that runs a script, and the
/// host's Python need not have Django).
const SCRIPT: &str = r#"
import os
import sys

if DATABASE.get("ENGINE") == "django.db.backends.mysql":
    import pymysql
    pymysql.install_as_MySQLdb()

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()

from django.contrib.auth.models import User
from django.core.management import execute_from_command_line

execute_from_command_line(["manage.py", "migrate", "--noinput", "--verbosity", "0"])
if not User.objects.filter(username="admin").exists():
    os.environ["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    execute_from_command_line(["manage.py", "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.org"])
"#;

/// Every `name=value` the response sets, in order.
fn cookies(r: &Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn cookie(r: &Response, name: &str) -> Option<String> {
    cookies(r).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn hidden_input(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\"")).unwrap_or_else(|| panic!("no {name} in the page:\n{html}"));
    let rest = &html[at..];
    let value = &rest[rest.find("value=\"").expect("a value") + 7..];
    value[..value.find('"').unwrap()].to_owned()
}

fn post_login(server: &Wasgi, csrftoken: &str, token: &str, password: &str) -> Response {
    let body = format!("csrfmiddlewaretoken={token}&username=admin&password={password}&next=%2Fadmin%2F");
    server.request(
        format!(
            "POST /admin/login/?next=/admin/ HTTP/1.1\r\nHost: localhost\r\nCookie: csrftoken={csrftoken}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// Writes a Django project in `dir`/project whose default database is
/// `database` (a Python dict literal); its WSGI script.
fn write_project(dir: &TempDir, database: &str) -> std::path::PathBuf {
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("mysite")).unwrap();
    std::fs::write(project.join("mysite/__init__.py"), "").unwrap();
    std::fs::write(project.join("mysite/settings.py"), format!("DATABASES = {{\"default\": {database}}}\n{SETTINGS}")).unwrap();
    std::fs::write(project.join("mysite/urls.py"), URLS).unwrap();
    let script = project.join("site.wsgi");
    std::fs::write(&script, format!("PASSWORD = {PASSWORD:?}\nDATABASE = {database}\n{SCRIPT}")).unwrap();
    script
}

/// `wasgi run` of the project with Django on its path and `args` added.
fn project_command(script: &std::path::Path, args: &[&str]) -> Vec<String> {
    own_interpreter();
    // No tzdata (Django needs it only on Windows): zoneinfo (TIME_ZONE with
    // USE_TZ) reads the time-zone database wasgi maps into every guest.
    let django = pip_packages("django", &["django==5.2.*"]);
    assert!(!django.join("tzdata").exists(), "the app installs no tzdata");
    let mut all: Vec<String> = [script.to_str().unwrap(), "--interpreter", "cpython-3.13", "--python-path", django.to_str().unwrap()]
        .iter()
        .chain(&["--instances", "1", "--startup-timeout", "300"])
        .map(|a| a.to_string())
        .collect();
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

fn serve_project(dir: &TempDir, database: &str, args: &[&str]) -> Wasgi {
    let command = project_command(&write_project(dir, database), args);
    Wasgi::start(&command.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn django_admin_login_works_on_the_own_build() {
    let dir = TempDir::new("django");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let database = format!("{{\"ENGINE\": \"django.db.backends.sqlite3\", \"NAME\": {:?}}}", data.join("db.sqlite3").to_str().unwrap());
    let server = serve_project(&dir, &database, &["--grant-write", data.to_str().unwrap()]);
    let db = std::fs::read(data.join("db.sqlite3")).expect("migrate wrote the database in the granted directory");
    assert!(
        db.windows(14).any(|w| w == b"pbkdf2_sha256$"),
        "the superuser's password is stored as a PBKDF2-SHA256 hash in {}",
        data.join("db.sqlite3").display()
    );
    admin_login(&server);
}

/// The same project on MariaDB, through PyMySQL (`install_as_MySQLdb`),
/// over the connection its grant allows: migrated at the first start and
/// logged into. Without the grant the start fails, naming the refusal.
#[test]
fn django_admin_on_mariadb_through_pymysql() {
    let db = wasgi_tests::servers::MariaDb::start();
    let pymysql = pip_packages("pymysql", &["PyMySQL==1.1.*"]);
    let dir = TempDir::new("django-mariadb");
    let database = format!(
        "{{\"ENGINE\": \"django.db.backends.mysql\", \"NAME\": {:?}, \"USER\": {:?}, \"PASSWORD\": {:?}, \"HOST\": \"127.0.0.1\", \"PORT\": \"{}\"}}",
        db.database, db.user, db.password, db.port
    );
    let grant = format!("127.0.0.1:{}", db.port);
    let server = serve_project(&dir, &database, &["--python-path", pymysql.to_str().unwrap(), "--connect", &grant]);
    assert!(db.query("SELECT username FROM auth_user").contains("admin"), "migrate and createsuperuser wrote to MariaDB");
    admin_login(&server);
    drop(server);

    let other = wasgi_tests::servers::MariaDb::start();
    let database = database.replace(&format!("\"PORT\": \"{}\"", db.port), &format!("\"PORT\": \"{}\"", other.port));
    let command = project_command(&write_project(&dir, &database), &["--python-path", pymysql.to_str().unwrap(), "--connect", &grant]);
    let server = Wasgi::spawn(&command.iter().map(String::as_str).collect::<Vec<_>>());
    let log = server.log.wait_for(&format!("wasgi run --connect 127.0.0.1:{}", other.port), std::time::Duration::from_secs(120));
    assert!(log.contains(&format!("denied: connecting to 127.0.0.1:{}", other.port)), "{log}");
}

/// The admin's login page, a login, the index with the session, a wrong
/// password, and the index without a session.
fn admin_login(server: &Wasgi) {
    let page = server.get("/admin/login/");
    assert_eq!(page.status, 200, "{}\n{}", page.text(), server.log.text());
    let csrftoken = cookie(&page, "csrftoken").expect("a csrftoken cookie");
    let token = hidden_input(&page.text(), "csrfmiddlewaretoken");

    let r = post_login(server, &csrftoken, &token, PASSWORD);
    assert_eq!(r.status, 302, "{}\n{}", r.text(), server.log.text());
    assert_eq!(r.header("location"), Some("/admin/"));
    let session = cookie(&r, "sessionid").expect("a sessionid cookie after logging in");
    let rotated = cookie(&r, "csrftoken").unwrap_or(csrftoken.clone()); // Django rotates it at login

    let r = server.request(
        format!("GET /admin/ HTTP/1.1\r\nHost: localhost\r\nCookie: csrftoken={rotated}; sessionid={session}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Site administration"), "{}", r.text());

    let r = post_login(server, &csrftoken, &token, "wrong-password");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Please enter the correct username and password for a staff account."), "{}", r.text());
    assert_eq!(cookie(&r, "sessionid"), None, "no session for a wrong password");

    let r = server.get("/admin/");
    assert_eq!((r.status, r.header("location")), (302, Some("/admin/login/?next=/admin/")), "without the session cookie");
}
