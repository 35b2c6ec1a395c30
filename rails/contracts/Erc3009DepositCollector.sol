// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

import {IERC3009} from "./IERC3009.sol";
import {IDepositCollector} from "./BatchSettlement.sol";

/// @title Erc3009DepositCollector: pulls a batch-settlement deposit with the payer's ERC-3009
/// `receiveWithAuthorization` and forwards it to the settlement contract.
/// @notice The stock x402 client signs the authorization to this contract's canonical address
/// with `nonce = keccak256(abi.encode(channelId, salt))`, so one signature can fund exactly one
/// channel, once (the token refuses a used nonce). Only the settlement contract may call
/// `collect`: it is the one that credits the channel. Like the settlement contract it keeps no
/// constructor state, so its runtime code can be placed at the canonical address.
contract Erc3009DepositCollector is IDepositCollector {
    address public constant SETTLEMENT = 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003;

    error OnlySettlement();
    error TransferFailed();

    /// @param data abi.encode(uint256 validAfter, uint256 validBefore, uint256 salt, bytes signature)
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata data)
        external
    {
        if (msg.sender != SETTLEMENT) revert OnlySettlement();
        (uint256 validAfter, uint256 validBefore, uint256 salt, bytes memory signature) =
            abi.decode(data, (uint256, uint256, uint256, bytes));
        bytes32 nonce = keccak256(abi.encode(channelId, salt));
        IERC3009(token).receiveWithAuthorization(
            payer, address(this), amount, validAfter, validBefore, nonce, signature
        );
        (bool ok, bytes memory ret) = token.call(abi.encodeCall(IERC3009.transfer, (SETTLEMENT, amount)));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }
}
