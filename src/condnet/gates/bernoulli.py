"""The paper's policy (section 3.1, model.router = "bernoulli"): one Bernoulli draw per block,

    sigma = p_min + (p_max - p_min) * sigmoid(Z s + d),  u_j ~ Bernoulli(sigma_j)

Z: (n_blocks, n_in), d: (n_blocks,); threshold mode: u_j = [sigma_j > 0.5]. Trained by REINFORCE (or
another estimator, condnet.train.estimators) with L_b, L_e and L_v."""

from condnet.gates import BlockScores, Lowered, register


@register
class Bernoulli(BlockScores):
    name = "bernoulli"
    learned = True
    draws = True

    def lower(self, tensors) -> Lowered:
        return Lowered("policy", z=tensors["Z"], d=tensors["d"])
