# Links python-reactor.wasm next to python.wasm, from the same objects and
# flags (CPython's own Makefile, given first), with wasgi's reactor.c in place
# of Programs/python.c. WASGI_REACTOR_C is set on the make command line.

Programs/wasgi_reactor.o: $(WASGI_REACTOR_C)
	$(CC) -c $(PY_CORE_CFLAGS) -o $@ $(WASGI_REACTOR_C)

python-reactor.wasm: Programs/wasgi_reactor.o $(LINK_PYTHON_DEPS)
	$(LINKCC) $(PY_CORE_LDFLAGS) $(LINKFORSHARED) -mexec-model=reactor -o $@ Programs/wasgi_reactor.o $(LINK_PYTHON_OBJS) $(LIBS) $(MODLIBS) $(SYSLIBS)
