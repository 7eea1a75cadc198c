"""A small nnet3 text network that uses every descriptor and component the importer supports (its weights
drawn from a seed), shared by the nnet3, decoding and anchor tests."""
import numpy as np


def matrix(rng, rows: int, cols: int) -> str:
    return "[\n" + "\n".join("  " + " ".join(f"{v:.6f}" for v in rng.normal(0, 0.6, cols)) for _ in range(rows)) + " ]"


def vector(values) -> str:
    return "[ " + " ".join(f"{v:.6f}" for v in values) + " ]"


def every_feature_text(seed: int = 0, feat_dim: int = 4, num_targets: int = 7) -> str:
    """An nnet3 text network using every supported descriptor and component, keys in varied order, layers reading
    earlier layers than the previous one."""
    rng = np.random.default_rng(seed)
    nodes = f"""input-node name=ivector dim=3
input-node name=input dim={feat_dim}
component-node name=lda component=lda input=Append(Offset(input, -1), input, Offset(input, 1), \
ReplaceIndex(ivector, t, 0))
component-node input=lda name=affine1 component=affine1
component-node component=relu1 name=relu1 input=affine1
component-node name=bn1 component=bn1 input=relu1
component-node name=tdnn2 component=tdnn2 input=bn1
component-node name=lin3 component=lin3 input=Append(Offset(tdnn2, -1), tdnn2)
component-node name=noop3 component=noop3 input=Sum(Scale(0.66, bn1), lin3)
component-node name=drop3 component=drop3 input=noop3
component-node name=norm4 component=norm4 input=Append(drop3, IfDefined(Offset(relu1, -4)))
component-node name=sig4 component=sig4 input=norm4
component-node name=tanh4 component=tanh4 input=Offset(tdnn2, 2)
component-node name=out component=out input=Append(sig4, tanh4, bn1)
component-node name=softmax component=softmax input=out
output-node name=output input=softmax objective=linear"""
    components = [
        f"<ComponentName> lda <FixedAffineComponent> <LinearParams>  {matrix(rng, 6, 3 * feat_dim + 3)}\n"
        f"<BiasParams>  {vector(rng.normal(0, 1, 6))}\n</FixedAffineComponent>",
        f"<ComponentName> affine1 <NaturalGradientAffineComponent> <MaxChange> 0.75 <LearningRate> 0.001 "
        f"<LinearParams>  {matrix(rng, 6, 6)}\n<BiasParams>  {vector(rng.normal(0, 1, 6))}\n<RankIn> 20 "
        f"<RankOut> 80 <UpdatePeriod> 4 </NaturalGradientAffineComponent>",
        "<ComponentName> relu1 <RectifiedLinearComponent> <Dim> 6 <ValueAvg>  [ ]\n<DerivAvg>  [ ]\n<Count> 0 "
        "<NumDimsSelfRepaired> 0 <NumDimsProcessed> 0 <SelfRepairScale> 1e-05 </RectifiedLinearComponent>",
        f"<ComponentName> bn1 <BatchNormComponent> <Dim> 6 <BlockDim> 3 <Epsilon> 0.001 <TargetRms> 1.5 "
        f"<TestMode> F <Count> 100 <StatsMean>  {vector(rng.normal(0, 1, 3))}\n<StatsVar>  "
        f"{vector(rng.uniform(0.5, 2, 3))}\n</BatchNormComponent>",
        f"<ComponentName> tdnn2 <TdnnComponent> <MaxChange> 0.75 <TimeOffsets> [ -2 0 1 ]\n<LinearParams>  "
        f"{matrix(rng, 5, 18)}\n<BiasParams>  {vector(rng.normal(0, 1, 5))}\n<OrthonormalConstraint> 0 "
        f"</TdnnComponent>",
        f"<ComponentName> lin3 <LinearComponent> <MaxChange> 0.75 <Params>  {matrix(rng, 6, 10)}\n"
        f"<OrthonormalConstraint> -1 </LinearComponent>",
        "<ComponentName> noop3 <NoOpComponent> <Dim> 6 <BackpropScale> 1 </NoOpComponent>",
        "<ComponentName> drop3 <GeneralDropoutComponent> <Dim> 6 <BlockDim> 6 <TimePeriod> 0 "
        "<DropoutProportion> 0.1 <TestMode> <Continuous> </GeneralDropoutComponent>",
        "<ComponentName> norm4 <NormalizeComponent> <InputDim> 12 <TargetRms> 0.8 <AddLogStddev> F "
        "</NormalizeComponent>",
        "<ComponentName> sig4 <SigmoidComponent> <Dim> 12 <ValueAvg>  [ ]\n</SigmoidComponent>",
        "<ComponentName> tanh4 <TanhComponent> <Dim> 5 <ValueAvg>  [ ]\n</TanhComponent>",
        f"<ComponentName> out <AffineComponent> <LinearParams>  {matrix(rng, num_targets, 23)}\n<BiasParams>  "
        f"{vector(rng.normal(0, 1, num_targets))}\n</AffineComponent>",
        f"<ComponentName> softmax <SoftmaxComponent> <Dim> {num_targets} <ValueAvg>  [ ]\n</SoftmaxComponent>"]
    return (f"<Nnet3> \n{nodes}\n\n<NumComponents> {len(components)} \n" + "\n".join(components)
            + "\n</Nnet3> \n")
