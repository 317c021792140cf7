import sys

if len(sys.argv) < 3:
    print("usage: app.py HOST PORT")
    sys.exit(2)
