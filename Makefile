# Entry point for everyday work. `make help` lists the targets.

STATICCHECK_VERSION ?= v0.8.2
EMULATOR_PORT ?= 8081
IMAGE ?= savesync:dev

.PHONY: help run test lint bench soak fuzz-api fuzz-decoders emulator docker

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/'

run: ## the service on its embedded defaults, the Auth emulator and the companion page (scripts/dev.sh)
	./scripts/dev.sh

test: ## every check and test of the project (what CI runs)
	./scripts/test.sh

lint: ## gofmt, go vet and staticcheck
	@out="$$(find . \( -path ./.git -o -path ./node_modules -o -path ./.data \) -prune -o -name '*.go' -print | xargs gofmt -l)"; \
	if [ -n "$$out" ]; then echo "these files need gofmt -w:"; echo "$$out"; exit 1; fi
	go vet ./...
	cd emulator && go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd emulator && go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench: ## benchmarks, 200 iterations each, then a short load run (report in .data/load.json)
	go test -run '^$$' -bench . -skip 'BenchmarkRelayDrain' -benchtime 200x -timeout 20m ./...
	go test -run '^$$' -bench 'BenchmarkRelayDrain' -benchtime 2x -timeout 20m ./events/
	cd emulator && go test -run '^$$' -bench . -benchtime 200x -timeout 20m ./...
	@mkdir -p .data
	./scripts/auth-emulator.sh go run ./cmd/savesync-load --players 40 --duration 10s --deltas 2000 --faults --out .data/load.json

SOAK_MUTATIONS ?= 1000000
SOAK_DURATION ?= 12h
SOAK_CRASH_EVERY ?= 3m

soak: ## bounded soak: $(SOAK_MUTATIONS) mutations on 2 service processes, faults and crashes on, memory and fds sampled (docs/benchmarks.md; not in make test)
	@mkdir -p .data
	./scripts/auth-emulator.sh go run ./cmd/savesync-load --instances 2 --players 200 --workers 48 \
		--mutations $(SOAK_MUTATIONS) --duration $(SOAK_DURATION) --faults --crash-every $(SOAK_CRASH_EVERY) \
		--attempts 10 --sample-every 30s --deltas 100 --out .data/soak.json

FUZZ_REQUESTS ?= 100000
FUZZ_SEED ?= 1
FUZZTIME ?= 30s

fuzz-api: ## the API fuzz pass at length: $(FUZZ_REQUESTS) requests over every route of openapi.yaml (docs/benchmarks.md)
	SAVESYNC_FUZZ_REQUESTS=$(FUZZ_REQUESTS) SAVESYNC_FUZZ_SEED=$(FUZZ_SEED) \
		go test -count=1 -run '^TestFuzzAPI$$' -v -timeout 4h ./cmd/internal/app/

fuzz-decoders: ## go test -fuzz on each decoder for $(FUZZTIME)
	go test -run '^$$' -fuzz '^FuzzDecodeMutation$$' -fuzztime $(FUZZTIME) ./save/
	go test -run '^$$' -fuzz '^FuzzDecodeStrictJSON$$' -fuzztime $(FUZZTIME) ./save/
	go test -run '^$$' -fuzz '^FuzzDecodeCursors$$' -fuzztime $(FUZZTIME) ./store/
	go test -run '^$$' -fuzz '^FuzzParseSessionID$$' -fuzztime $(FUZZTIME) ./store/
	go test -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME) ./handlers/
	go test -run '^$$' -fuzz '^FuzzCheckBodyText$$' -fuzztime $(FUZZTIME) ./handlers/

emulator: ## the Firestore emulator alone, on 127.0.0.1:$(EMULATOR_PORT)
	cd emulator && go run ./cmd/firestore-emulator --host 127.0.0.1 --port $(EMULATOR_PORT) --data-dir ../.data/firestore-emulator --indexes ../firestore.indexes.json

docker: ## build the container image $(IMAGE)
	docker build -t $(IMAGE) .
