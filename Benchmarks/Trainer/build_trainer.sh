#!/usr/bin/env bash
# Prints the path of a stratum-trainer binary built the way CI builds it (SwiftPM debug
# configuration; the C target carries -O3 -ffast-math -fno-finite-math-only itself).
# Uses $STRATUM_TRAINER_BIN or the repository's .build when present, otherwise builds the
# trainer targets alone in a scratch package so a half-finished engine cannot break it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ -n "${STRATUM_TRAINER_BIN:-}" ]]; then echo "$STRATUM_TRAINER_BIN"; exit 0; fi
if [[ -x "$repo/.build/debug/stratum-trainer" ]]; then echo "$repo/.build/debug/stratum-trainer"; exit 0; fi
scratch="${TMPDIR:-/tmp}/stratum-trainer-bench-pkg"
mkdir -p "$scratch/Sources"
ln -sfn "$repo/Sources/TrainerCore" "$scratch/Sources/TrainerCore"
ln -sfn "$repo/Sources/stratum-trainer" "$scratch/Sources/stratum-trainer"
cat > "$scratch/Package.swift" <<'SWIFT'
// swift-tools-version:6.0
import PackageDescription
let flags: [CSetting] = [.unsafeFlags(["-O3", "-ffast-math", "-fno-finite-math-only"])]
let package = Package(name: "TrainerBench", targets: [
    .target(name: "TrainerCore", cSettings: flags,
            linkerSettings: [.linkedLibrary("yaml"), .linkedLibrary("curl"), .linkedLibrary("ssl"),
                             .linkedLibrary("crypto"), .linkedLibrary("m"), .linkedLibrary("pthread")]),
    .executableTarget(name: "stratum-trainer", dependencies: ["TrainerCore"], cSettings: flags),
])
SWIFT
(cd "$scratch" && swift build --product stratum-trainer >&2)
echo "$scratch/.build/debug/stratum-trainer"
