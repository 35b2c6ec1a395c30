// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

/// @title TryAggregate: Multicall3's `tryAggregate`, for local chains only.
/// @notice The stock x402 batch-settlement facilitator reads a channel's state through Multicall3's
/// `tryAggregate` at its usual address, which anvil lacks. The benchmark places this runtime code
/// there (`anvil_setCode`); d402 itself never calls it. It keeps no state.
contract TryAggregate {
    struct Call {
        address target;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    error CallFailed(uint256 index);

    /// @notice Runs each call in turn; with `requireSuccess`, the first failure reverts them all.
    function tryAggregate(bool requireSuccess, Call[] calldata calls)
        external
        payable
        returns (Result[] memory returnData)
    {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory ret) = calls[i].target.call(calls[i].callData);
            if (requireSuccess && !ok) revert CallFailed(i);
            returnData[i] = Result(ok, ret);
        }
    }
}
