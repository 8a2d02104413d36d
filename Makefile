# Entry point for everyday work. `make help` lists the targets.

STATICCHECK_VERSION ?= v0.8.2
EMULATOR_PORT ?= 8081
IMAGE ?= savesync:dev

.PHONY: help run test lint bench emulator docker

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/'

run: ## run the service on the embedded defaults (http://localhost:8080)
	go run ./cmd/savesync

test: ## every check and test of the project (what CI runs)
	./scripts/test.sh

lint: ## gofmt, go vet and staticcheck
	@out="$$(find . \( -path ./.git -o -path ./node_modules -o -path ./.data \) -prune -o -name '*.go' -print | xargs gofmt -l)"; \
	if [ -n "$$out" ]; then echo "these files need gofmt -w:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench: ## benchmarks, 200 iterations each, then a short load run (report in .data/load.json)
	go test -run '^$$' -bench . -benchtime 200x -timeout 20m ./...
	@mkdir -p .data
	./scripts/auth-emulator.sh go run ./cmd/savesync-load --players 40 --duration 10s --deltas 2000 --faults --out .data/load.json

emulator: ## the Firestore emulator alone, on 127.0.0.1:$(EMULATOR_PORT)
	go run ./cmd/firestore-emulator --host 127.0.0.1 --port $(EMULATOR_PORT) --data-dir .data/firestore-emulator

docker: ## build the container image $(IMAGE)
	docker build -t $(IMAGE) .
