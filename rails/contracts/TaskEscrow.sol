// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

import {IERC3009} from "./IERC3009.sol";
import {Signatures} from "./Signatures.sol";

/// @title TaskEscrow: one task's payment held until the validator role releases it as a split,
/// or refunded to the buyer after the deadline.
/// @notice The buyer signs an EIP-3009 ReceiveWithAuthorization to this contract whose nonce is
/// `termsNonce(terms)`: the hash of the task id, the amount, the creator's and gateway's shares,
/// the deadline, the validator and this contract. Anyone may submit it with `fund`, but only with
/// those terms, and receiveWithAuthorization can only be called by this contract, so a front-run
/// cannot detach the money from the task or change its split. `settle` needs the validator's
/// EIP-712 signature over the task id, the workers and the split, and pays the workers (a quorum's
/// agreeing workers share the worker amount), the creator and the gateway at once;
/// `refund` needs nobody's key once the deadline has passed. Each task ends exactly once.
contract TaskEscrow {
    enum State {
        None,
        Funded,
        Settled,
        Refunded
    }

    /// What the buyer's authorization is bound to.
    struct Terms {
        bytes32 taskId;
        uint256 amount;
        address creator;
        uint256 creatorAmount;
        address gateway;
        uint256 gatewayAmount;
        uint64 deadline;
    }

    /// Packed into four storage slots: storage writes are most of the cost of funding a task.
    /// 96 bits hold 7.9e28 atomic units, far beyond any token's supply.
    struct Task {
        address buyer;
        uint64 deadline;
        State state;
        address creator;
        uint96 creatorAmount;
        address gateway;
        uint96 gatewayAmount;
        uint256 amount;
    }

    bytes32 public constant RELEASE_TYPEHASH = keccak256(
        "Release(bytes32 taskId,address[] workers,uint256 workerAmount,uint256 creatorAmount,uint256 gatewayAmount)"
    );

    /// A quorum is a handful of workers; the bound keeps a release's gas predictable.
    uint256 public constant MAX_WORKERS = 16;

    IERC3009 public immutable token;
    address public immutable validator;
    bytes32 public immutable DOMAIN_SEPARATOR;

    mapping(bytes32 => Task) public tasks;

    event Funded(bytes32 indexed taskId, address indexed buyer, uint256 amount, uint64 deadline);
    event Settled(
        bytes32 indexed taskId, address[] workers, uint256 workerAmount, uint256 creatorAmount, uint256 gatewayAmount
    );
    event Refunded(bytes32 indexed taskId, address indexed buyer, uint256 amount);

    error TaskExists();
    error SplitExceedsAmount();
    error NotFunded(State state);
    error DeadlinePassed();
    error DeadlineNotReached();
    error NotValidator();
    error TransferFailed();
    error AmountTooLarge();
    error WorkerCount(uint256 count);

    constructor(IERC3009 token_, address validator_) {
        token = token_;
        validator = validator_;
        DOMAIN_SEPARATOR = Signatures.domainSeparator("d402 TaskEscrow", "1");
    }

    /// @notice The EIP-3009 nonce a buyer signs to fund `t`.
    function termsNonce(Terms calldata t) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                address(this), validator, t.taskId, t.amount, t.creator, t.creatorAmount, t.gateway, t.gatewayAmount, t.deadline
            )
        );
    }

    function fund(Terms calldata t, address buyer, uint256 validAfter, uint256 validBefore, bytes calldata signature)
        external
    {
        if (tasks[t.taskId].state != State.None) revert TaskExists();
        if (t.creatorAmount + t.gatewayAmount > t.amount) revert SplitExceedsAmount();
        if (t.creatorAmount > type(uint96).max || t.gatewayAmount > type(uint96).max) revert AmountTooLarge();
        tasks[t.taskId] = Task({
            buyer: buyer,
            deadline: t.deadline,
            state: State.Funded,
            creator: t.creator,
            creatorAmount: uint96(t.creatorAmount),
            gateway: t.gateway,
            gatewayAmount: uint96(t.gatewayAmount),
            amount: t.amount
        });
        token.receiveWithAuthorization(buyer, address(this), t.amount, validAfter, validBefore, termsNonce(t), signature);
        emit Funded(t.taskId, buyer, t.amount, t.deadline);
    }

    /// @notice Pays the split: `workers` share the amount less the creator's and gateway's
    /// shares fixed at funding, equally, the first taking what the division leaves over. Needs
    /// the validator's signature over exactly these workers, in this order, and these amounts.
    function settle(bytes32 taskId, address[] calldata workers, bytes calldata validatorSignature) external {
        Task storage k = tasks[taskId];
        if (k.state != State.Funded) revert NotFunded(k.state);
        if (block.timestamp > k.deadline) revert DeadlinePassed();
        uint256 n = workers.length;
        if (n == 0 || n > MAX_WORKERS) revert WorkerCount(n);
        uint256 workerAmount = k.amount - k.creatorAmount - k.gatewayAmount;
        bytes32 structHash = keccak256(
            abi.encode(
                RELEASE_TYPEHASH,
                taskId,
                keccak256(abi.encodePacked(workers)),
                workerAmount,
                k.creatorAmount,
                k.gatewayAmount
            )
        );
        if (Signatures.recover(Signatures.digest(DOMAIN_SEPARATOR, structHash), validatorSignature) != validator) {
            revert NotValidator();
        }
        k.state = State.Settled;
        uint256 share = workerAmount / n;
        _pay(workers[0], workerAmount - share * (n - 1));
        for (uint256 i = 1; i < n; i++) {
            _pay(workers[i], share);
        }
        _pay(k.creator, k.creatorAmount);
        _pay(k.gateway, k.gatewayAmount);
        emit Settled(taskId, workers, workerAmount, k.creatorAmount, k.gatewayAmount);
    }

    /// @notice Returns everything to the buyer once the deadline has passed. Anyone may call it.
    function refund(bytes32 taskId) external {
        Task storage k = tasks[taskId];
        if (k.state != State.Funded) revert NotFunded(k.state);
        if (block.timestamp <= k.deadline) revert DeadlineNotReached();
        k.state = State.Refunded;
        _pay(k.buyer, k.amount);
        emit Refunded(taskId, k.buyer, k.amount);
    }

    function _pay(address to, uint256 amount) private {
        if (amount > 0 && !token.transfer(to, amount)) revert TransferFailed();
    }
}
