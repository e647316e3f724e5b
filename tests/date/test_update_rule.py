import torch

from date.update import normalized, normalized_step


def update_embeddings(embeds, embeds_org, gradient, num_steps, lr, init_org=False):
    """`num_steps` applications of the rule, as `date.step.date_step` takes them."""
    for _ in range(num_steps):
        embeds = normalized_step(embeds, embeds_org, gradient(embeds.detach()), lr, init_org)
    return embeds


def gradient_of(loss):
    """The gradient function the update rule takes, from a per-sample loss."""

    def gradient(c):
        c = c.detach().requires_grad_(True)
        return torch.autograd.grad(loss(c).sum(), c)[0]

    return gradient


def test_normalized_has_unit_norm_per_sample_and_zero_for_zero_gradient():
    grad = torch.randn(3, 5, 4)
    grad[1] = 0
    step = normalized(grad)
    norms = step.flatten(1).norm(dim=1)
    assert torch.allclose(norms[[0, 2]], torch.ones(2), atol=1e-6)
    assert torch.equal(step[1], torch.zeros(5, 4))
    assert torch.isfinite(step).all()


def test_each_step_moves_each_sample_by_exactly_rho():
    target = torch.randn(2, 5, 4)
    embeds = torch.randn(2, 5, 4)
    loss = lambda c: ((c - target) ** 2).sum(dim=(1, 2)) * torch.tensor([1.0, 100.0])  # very different scales
    updated = update_embeddings(embeds, embeds.clone(), gradient_of(loss), num_steps=1, lr=0.3)
    moved = (updated - embeds).flatten(1).norm(dim=1)
    assert torch.allclose(moved, torch.full((2,), 0.3), atol=1e-5)
    # the direction is minus the gradient, 2 (c - target)
    direction = -(embeds - target)
    cos = torch.nn.functional.cosine_similarity((updated - embeds).flatten(1), direction.flatten(1))
    assert torch.allclose(cos, torch.ones(2), atol=1e-5)


def test_several_steps_accumulate_and_init_org_restarts_from_original():
    embeds = torch.zeros(1, 3, 2)
    loss = lambda c: -c[:, 0, 0]  # constant gradient: every step moves +rho along one coordinate
    accumulated = update_embeddings(embeds, embeds.clone(), gradient_of(loss), num_steps=3, lr=0.5)
    assert torch.isclose(accumulated[0, 0, 0], torch.tensor(1.5))
    restarted = update_embeddings(embeds, embeds.clone(), gradient_of(loss), num_steps=3, lr=0.5, init_org=True)
    assert torch.isclose(restarted[0, 0, 0], torch.tensor(0.5))


def test_zero_gradient_leaves_embedding_unchanged():
    embeds = torch.randn(2, 3, 2)
    loss = lambda c: (c * 0).sum(dim=(1, 2))
    assert torch.equal(update_embeddings(embeds, embeds.clone(), gradient_of(loss), num_steps=2, lr=1.0), embeds)
