import Foundation
import Testing
import TrainerCore

/// A model backend that keeps its state apart from the host arrays, the way a GPU does: its
/// "device" is a CPU model, and the host arrays are copied from and to it only in download and
/// upload. If the tc_model handle forgot a download, the trainer would checkpoint stale
/// weights; if it forgot an upload, writes through tc_model_params would be lost. Both show up
/// against a plain CPU run, bit for bit, without a GPU.
final class MirrorDevice {
    let model: OpaquePointer
    let host: UnsafeMutablePointer<Float>
    let count: Int

    init(model: OpaquePointer) {
        self.model = model
        count = 4 * tc_model_num_params(model)
        host = .allocate(capacity: count)
        download()  // create leaves host and device equal
    }

    deinit {
        tc_model_free(model)
        host.deallocate()
    }

    func download() { host.update(from: tc_model_params(model), count: count) }
    func upload() { tc_model_params(model).update(from: host, count: count) }

    static func from(_ impl: UnsafeMutableRawPointer?) -> MirrorDevice {
        Unmanaged<MirrorDevice>.fromOpaque(impl!).takeUnretainedValue()
    }

    /// The backend table; the caller owns (and deallocates) the returned memory.
    static func backend() -> UnsafeMutablePointer<tc_model_backend> {
        let name = UnsafeRawPointer(StaticString("mirror").utf8Start).assumingMemoryBound(to: CChar.self)
        let table = tc_model_backend(
            name: name,
            create: { layers, width, heads, context, seed, threads, _, _ in
                guard let model = tc_model_create(layers, width, heads, context, seed, threads) else { return nil }
                return Unmanaged.passRetained(MirrorDevice(model: model)).toOpaque()
            },
            destroy: { Unmanaged<MirrorDevice>.fromOpaque($0!).release() },
            forward: { tc_model_forward(MirrorDevice.from($0).model, $1, $2, $3, $4) },
            zero_grad: { tc_model_zero_grad(MirrorDevice.from($0).model) },
            backward: { tc_model_backward(MirrorDevice.from($0).model) },
            clip_grad: { tc_model_clip_grad(MirrorDevice.from($0).model, $1) },
            update: { tc_model_update(MirrorDevice.from($0).model, $1, $2, $3, $4, $5, $6) },
            host_state: { MirrorDevice.from($0).host },
            download: { MirrorDevice.from($0).download() },
            upload: { MirrorDevice.from($0).upload() },
            logits: { tc_model_logits(MirrorDevice.from($0).model) },
            probs: { tc_model_probs(MirrorDevice.from($0).model) },
            device: { _ in UnsafeRawPointer(StaticString("mirror device").utf8Start).assumingMemoryBound(to: CChar.self) }
        )
        let pointer = UnsafeMutablePointer<tc_model_backend>.allocate(capacity: 1)
        pointer.initialize(to: table)
        return pointer
    }
}

extension TrainerSuite {
    @Suite struct BackendTests {
        func weights(_ t: OpaquePointer) throws -> [Float] {
            let model = try #require(tc_trainer_model(t))
            return Array(UnsafeBufferPointer(start: tc_model_params(model), count: tc_model_num_params(model)))
        }

        func step(_ t: OpaquePointer) throws -> Float {
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            var loss: Float = 0
            try #require(tc_trainer_step(t, &loss, &err, err.count) == 0, "\(errorText(err))")
            return loss
        }

        /// Training, host writes and checkpoints through a device-style backend match the CPU
        /// backend bit for bit, and a checkpoint moves between the two in both directions.
        @Test func deviceBackendKeepsHostArraysCoherent() async throws {
            let backend = MirrorDevice.backend()
            defer { backend.deallocate() }
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            var cpuCfg = try makeConfig(tinyModel.merging(["train.steps": "30"]) { $1 })
            var devCfg = cpuCfg
            devCfg.backend = UnsafePointer(backend)
            let cpu = try #require(tc_trainer_create(&cpuCfg, &err, err.count), "\(errorText(err))")
            defer { tc_trainer_free(cpu) }
            let dev = try #require(tc_trainer_create(&devCfg, &err, err.count), "\(errorText(err))")
            defer { tc_trainer_free(dev) }
            #expect(String(cString: tc_model_device(tc_trainer_model(dev))) == "mirror device")
            #expect(try weights(dev) == weights(cpu), "same seed, same initial weights")

            for _ in 0..<5 { #expect(try step(dev) == step(cpu)) }
            #expect(try weights(dev) == weights(cpu), "the host arrays must be downloaded after steps")

            // A write through the host arrays reaches the device before the next step.
            for t in [cpu, dev] { tc_model_params(tc_trainer_model(t))[0] += 0.5 }
            for _ in 0..<3 { #expect(try step(dev) == step(cpu)) }

            // Device state -> checkpoint -> a CPU trainer, and back into a fresh device trainer.
            var buf: UnsafeMutablePointer<UInt8>?
            var len = 0
            try #require(tc_trainer_serialize(dev, &buf, &len) == 0)
            let resumed = try #require(tc_trainer_create(&cpuCfg, &err, err.count), "\(errorText(err))")
            defer { tc_trainer_free(resumed) }
            try #require(tc_trainer_deserialize(resumed, buf, len, &err, err.count) == 0, "\(errorText(err))")
            free(buf)
            #expect(try step(resumed) == step(dev))
            try #require(tc_trainer_serialize(resumed, &buf, &len) == 0)
            let back = try #require(tc_trainer_create(&devCfg, &err, err.count), "\(errorText(err))")
            defer { tc_trainer_free(back) }
            try #require(tc_trainer_deserialize(back, buf, len, &err, err.count) == 0, "\(errorText(err))")
            free(buf)
            #expect(try step(back) == step(resumed))
            #expect(try weights(back) == weights(resumed))
        }

        /// The logits the model exposes are the ones its probabilities are the softmax of.
        @Test func probabilitiesAreTheSoftmaxOfTheLogits() async throws {
            let model = try #require(tc_model_create(1, 16, 2, 8, 3, 1))
            defer { tc_model_free(model) }
            #expect(String(cString: try #require(tc_model_backend_of(model)).pointee.name) == "cpu")
            var inputs = [UInt8](repeating: 65, count: 16), targets = [UInt8](repeating: 66, count: 16)
            _ = tc_model_forward(model, &inputs, &targets, 2, 8)
            let logits = try #require(tc_model_logits(model)), probs = try #require(tc_model_probs(model))
            for row in 0..<16 {
                let l = (0..<256).map { Double(logits[row * 256 + $0]) }
                let m = l.max()!
                let sum = l.reduce(0) { $0 + exp($1 - m) }
                for i in 0..<256 { #expect(abs(exp(l[i] - m) / sum - Double(probs[row * 256 + i])) < 1e-6) }
            }
        }
    }
}
