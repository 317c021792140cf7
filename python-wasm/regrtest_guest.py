"""Runs CPython's regrtest (`python -m test`) inside the guest, with the
expectations of python-wasm/regrtest.toml applied and every outcome recorded.

    python regrtest_guest.py SPEC.json

python-wasm/regrtest (on the host) writes SPEC.json: the regrtest arguments,
the file to record into, and per test module the tests to skip (never run:
they would hang or kill the interpreter) and the tests expected to fail. This
runner changes nothing in regrtest's own logic; it only

- marks tests when a module's tests are loaded (unittest's loader):
  a skip replaces the test method by one that raises SkipTest(reason) (on a
  whole class, the class is skipped, setUpClass included); an expected failure
  sets unittest's own `__unittest_expecting_failure__` on the test, so a pass
  is an "unexpected success";
- records each outcome unittest reports (success, failure, error, skip,
  expected failure, unexpected success, failing subtests) and each test
  module's regrtest state, one JSON object a line, flushed at once, so the host
  still has them when the guest dies.
"""

import fnmatch
import io
import json
import os
import sys
import traceback
import unittest


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    records = open(spec["records"], "a", encoding="utf-8")

    def record(**fields):
        records.write(json.dumps(fields) + "\n")
        records.flush()

    current = {"module": None, "used": set()}

    def marks_for(test_id):
        """(kind, reason, pattern) for a test id of the running module, or None."""
        module = current["module"]
        if module not in spec["expect"]:
            # test_asyncio.test_tasks: the patterns of [module.test_asyncio]
            module = module.split(".")[0]
        expect = spec["expect"].get(module)
        if not expect:
            return None
        prefix = f"test.{module}."
        rel = test_id[len(prefix):] if test_id.startswith(prefix) else test_id
        for kind in ("skip", "xfail"):
            for pattern, reason in expect.get(kind, {}).items():
                if fnmatch.fnmatchcase(rel, pattern) or rel.startswith(pattern + "."):
                    return kind, reason, pattern
        return None

    def skipper(reason):
        def skipped():
            raise unittest.SkipTest(reason)
        return skipped

    def mark(suite):
        for test in suite:
            if isinstance(test, unittest.TestSuite):
                mark(test)
                continue
            if not isinstance(test, unittest.TestCase):
                continue
            method = getattr(test, "_testMethodName", None)
            test_id = test.id()
            cls = type(test)
            found = marks_for(test_id)
            if not found:
                continue
            kind, reason, pattern = found
            current["used"].add(pattern)
            class_id = test_id.rsplit(".", 1)[0]
            if kind == "skip" and marks_for(class_id) == found:
                # The whole class: unittest then skips setUpClass as well.
                cls.__unittest_skip__ = True
                cls.__unittest_skip_why__ = f"wasgi: {reason}"
            elif kind == "skip" and method:
                setattr(test, method, skipper(f"wasgi: {reason}"))
            elif kind == "xfail" and method:
                test.__unittest_expecting_failure__ = True
                # unittest expects failures of the test method only; a setUp
                # that fails (it needs a socket, say) runs inside it instead.
                set_up, test_method = test.setUp, getattr(test, method)

                def set_up_then_test(set_up=set_up, test_method=test_method):
                    set_up()
                    return test_method()
                test.setUp = lambda: None
                setattr(test, method, set_up_then_test)

    load = unittest.TestLoader.loadTestsFromModule

    def load_and_mark(self, module, *args, **kwargs):
        suite = load(self, module, *args, **kwargs)
        mark(suite)
        return suite

    unittest.TestLoader.loadTestsFromModule = load_and_mark

    def describe(err):
        return "".join(traceback.format_exception(*err))[-4000:]

    base = unittest.TestResult
    original = {name: getattr(base, name) for name in (
        "addSuccess", "addFailure", "addError", "addSkip",
        "addExpectedFailure", "addUnexpectedSuccess", "addSubTest")}

    def on(outcome, test, detail=None):
        record(kind="test", module=current["module"], id=str(test.id()),
               outcome=outcome, detail=detail)

    def addSuccess(self, test):
        on("passed", test)
        return original["addSuccess"](self, test)

    def addFailure(self, test, err):
        on("failed", test, describe(err))
        return original["addFailure"](self, test, err)

    def addError(self, test, err):
        on("error", test, describe(err))
        return original["addError"](self, test, err)

    def addSkip(self, test, reason):
        on("skipped", test, str(reason))
        return original["addSkip"](self, test, reason)

    def addExpectedFailure(self, test, err):
        on("xfail", test, describe(err))
        return original["addExpectedFailure"](self, test, err)

    def addUnexpectedSuccess(self, test):
        on("xpass", test)
        return original["addUnexpectedSuccess"](self, test)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            on("failed" if failed else "error", subtest, describe(err))
        return original["addSubTest"](self, test, subtest, err)

    for name, fn in (("addSuccess", addSuccess), ("addFailure", addFailure),
                     ("addError", addError), ("addSkip", addSkip),
                     ("addExpectedFailure", addExpectedFailure),
                     ("addUnexpectedSuccess", addUnexpectedSuccess),
                     ("addSubTest", addSubTest)):
        setattr(base, name, fn)

    import test.libregrtest.main as regrtest_main
    run_single_test = regrtest_main.run_single_test

    class Tee(io.TextIOBase):
        """Writes through to the real stream and keeps the module's output, so
        a module that fails to import or is skipped whole can be explained."""
        def __init__(self, stream, kept):
            self.stream, self.kept = stream, kept

        def write(self, text):
            self.kept.append(text)
            return self.stream.write(text)

        def flush(self):
            self.stream.flush()

    from test import support

    def run_module(test_name, runtests):
        current["module"] = test_name
        current["used"] = set()
        record(kind="start", module=test_name)
        kept = []
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(stdout, kept), Tee(stderr, kept)
        # A module that skips itself whole for want of sockets, but whose
        # tests mostly need none (regrtest.toml says which and why): run it,
        # and let its socket tests fail as expected.
        has_socket_support = support.has_socket_support
        if {test_name, test_name.split(".")[0]} & set(spec["socket_support"]):
            support.has_socket_support = True
        try:
            result = run_single_test(test_name, runtests)
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            support.has_socket_support = has_socket_support
        record(kind="module", module=test_name, state=result.state,
               seconds=round(result.duration or 0, 2),
               used=sorted(current["used"]), output="".join(kept)[-3000:])
        return result

    regrtest_main.run_single_test = run_module
    # As `python -m test`: sys.path[0] is the working directory, not this
    # runner's (some tests walk sys.path to remove files they may have left).
    sys.path[0] = os.getcwd()
    sys.argv = ["python -m test", *spec["args"]]
    regrtest_main.main()


if __name__ == "__main__":
    main()
