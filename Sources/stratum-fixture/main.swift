import StratumCLI
await StratumCLI.main(stacks: [])
